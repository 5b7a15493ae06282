"""Turning what the registry sends and writes into events: notifications, log lines."""
