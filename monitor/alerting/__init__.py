"""Alert delivery: the alert model, Slack rendering, throttling, the notifiers and the outbox."""
