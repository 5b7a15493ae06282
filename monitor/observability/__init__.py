"""Metrics, store-derived collectors and structured logging."""
