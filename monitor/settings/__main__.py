"""`python -m monitor.settings` prints the configuration reference table for the README."""

from monitor.settings.loader import reference_table

print(reference_table())
