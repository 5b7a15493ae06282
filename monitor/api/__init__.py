"""The HTTP interface: intake, the read API, health and metrics."""
