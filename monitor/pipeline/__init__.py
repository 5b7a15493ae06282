"""Jobs that move stored events through detection and alerts to Slack."""
