"""What every settings section is made of: `setting(default, doc, secret=...)` declares a
field, `Secret` holds a value that never shows itself, `ENV_PREFIX` begins every environment
variable."""

from __future__ import annotations

import dataclasses
from typing import Any

ENV_PREFIX = "REGISTRY_MONITOR_"


class Secret:
    """A string that never shows itself in `repr`, `str` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def setting(default: Any, doc: str, *, secret: bool = False) -> Any:
    if isinstance(default, list | dict):
        factory = lambda d=default: type(d)(d)  # noqa: E731 - a fresh copy per instance
        return dataclasses.field(default_factory=factory, metadata={"doc": doc, "secret": secret})
    return dataclasses.field(default=default, metadata={"doc": doc, "secret": secret})
