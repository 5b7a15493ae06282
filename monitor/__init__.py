"""registry-monitor: audit, alerting and safe tag cleanup beside a CNCF distribution registry."""

__version__ = "0.1.0"
