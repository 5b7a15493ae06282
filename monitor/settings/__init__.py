"""One Settings object, loaded once from a YAML file and the environment, passed explicitly.

`sections` declares every key (type, default, documentation); `loader` reads a YAML file and
the environment into them, validates (`validation`: checks across keys), and prints the
effective settings and the reference.
"""

from monitor.settings.fields import ENV_PREFIX, Secret, setting
from monitor.settings.loader import (
    known_variables,
    load_settings,
    reference,
    reference_table,
    to_document,
    unknown_variables,
)
from monitor.settings.sections import (
    AlertingSettings,
    ApiSettings,
    AuditSettings,
    CleanupSettings,
    DatabaseSettings,
    DetectSettings,
    HttpSettings,
    InputSettings,
    LoggingSettings,
    LogsSettings,
    NotificationsSettings,
    ReconcileSettings,
    RegistrySettings,
    RetentionSettings,
    Settings,
)
from monitor.settings.validation import validate

__all__ = [
    "ENV_PREFIX",
    "AlertingSettings",
    "ApiSettings",
    "AuditSettings",
    "CleanupSettings",
    "DatabaseSettings",
    "DetectSettings",
    "HttpSettings",
    "InputSettings",
    "LoggingSettings",
    "LogsSettings",
    "NotificationsSettings",
    "ReconcileSettings",
    "RegistrySettings",
    "RetentionSettings",
    "Secret",
    "Settings",
    "known_variables",
    "load_settings",
    "reference",
    "reference_table",
    "setting",
    "to_document",
    "unknown_variables",
    "validate",
]
