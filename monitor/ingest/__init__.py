"""Notification and log parsing (pure) and the file follower."""
