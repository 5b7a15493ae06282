"""Loading, validating and printing Settings.

Precedence, lowest first: defaults, the YAML file (`--config`), then environment variables
`REGISTRY_MONITOR_<SECTION>_<KEY>` (the registry's own `REGISTRY_…` convention). A secret key
can also be read from a file: `<key>_file` in YAML or `REGISTRY_MONITOR_<SECTION>_<KEY>_FILE`.

Nothing here runs at import time; `load_settings` takes the environment as a mapping.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from monitor.errors import ConfigError
from monitor.settings.fields import ENV_PREFIX, Secret
from monitor.settings.sections import Settings
from monitor.settings.validation import validate

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(key: str, hint: Any, value: Any, *, from_env: bool) -> Any:
    """`value` (from YAML, or a string from the environment) as the type `hint` asks for."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (from_env and value == ""):
            return None
        return _convert(key, args[0], value, from_env=from_env)
    if origin is list:
        (item,) = typing.get_args(hint)
        if from_env and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        return [_convert(key, item, v, from_env=from_env) for v in value]
    if origin is dict or hint is dict:
        if from_env and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(key, f"expected a JSON object: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if hint is int or hint is float:
        if isinstance(value, bool):
            raise ConfigError(key, f"expected a number, got {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected a number, got {value!r}") from None
    if hint is Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str | int) or str(value) == "":
            raise ConfigError(key, "expected a non-empty string")
        return Secret(str(value))
    if hint is Path:
        if not isinstance(value, str | Path) or str(value) == "":
            raise ConfigError(key, "expected a path")
        return Path(value)
    if hint is str:
        if isinstance(value, dict | list):
            raise ConfigError(key, f"expected a string, got {type(value).__name__}")
        return str(value)
    raise ConfigError(key, f"unsupported setting type {hint!r}")  # pragma: no cover


def _read_secret_file(key: str, path: str) -> str:
    """The secret in the file at `path`, without surrounding whitespace; `key` is the
    `…_file` setting that named it (YAML key, or its `…_FILE` variable), for the error."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(key, f"cannot read secret file {path}: {exc.strerror}") from exc
    if not text:
        raise ConfigError(key, f"secret file {path} is empty")
    return text


def secret_names(cls: type[Any]) -> set[str]:
    """The fields of a section declared secret: only these have a `<key>_file` form."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("secret")}


def secret_keys() -> list[str]:
    """Every secret as `section.key`, in reference order (the README lists them)."""
    hints = typing.get_type_hints(Settings)
    return [
        f"{section.name}.{name}"
        for section in dataclasses.fields(Settings)
        for name in sorted(
            secret_names(hints[section.name]),
            key=[f.name for f in dataclasses.fields(hints[section.name])].index,
        )
    ]


def _check_keys(cls: type[Any], name: str, from_file: Mapping[str, Any]) -> None:
    """Refuse keys the section does not have. A key is a setting by its own name (even one
    ending in `_file`, like `detect.rules_file`); `<secret>_file` is the file form of a secret."""
    known = {f.name for f in dataclasses.fields(cls)}
    secrets = secret_names(cls)
    for raw_key in from_file:
        key = str(raw_key)
        if key in known:
            continue
        bare = key.removesuffix("_file")
        if bare != key and bare in secrets:
            if bare in from_file:
                raise ConfigError(f"{name}.{key}", f"set {name}.{bare} or {name}.{key}, not both")
            continue
        if bare != key and bare in known:
            raise ConfigError(
                f"{name}.{key}",
                f"unknown setting: {name}.{bare} is not a secret, so it has no _file form",
            )
        raise ConfigError(f"{name}.{key}", "unknown setting")


def _build_section(
    cls: type[T], name: str, from_file: Mapping[str, Any], environ: Mapping[str, str]
) -> T:
    hints = typing.get_type_hints(cls)
    _check_keys(cls, name, from_file)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f"{name}.{field.name}"
        env_name = f"{ENV_PREFIX}{name.upper()}_{field.name.upper()}"
        hint = hints[field.name]
        secret = bool(field.metadata.get("secret"))
        if env_name in environ:
            values[field.name] = _convert(key, hint, environ[env_name], from_env=True)
        elif secret and f"{env_name}_FILE" in environ:
            text = _read_secret_file(f"{key}_file", environ[f"{env_name}_FILE"])
            values[field.name] = _convert(key, hint, text, from_env=True)
        elif field.name in from_file:
            values[field.name] = _convert(key, hint, from_file[field.name], from_env=False)
        elif secret and f"{field.name}_file" in from_file:
            path = from_file[f"{field.name}_file"]
            if not isinstance(path, str) or not path:
                raise ConfigError(f"{key}_file", "expected the path of a file")
            text = _read_secret_file(f"{key}_file", path)
            values[field.name] = _convert(key, hint, text, from_env=True)
    return cls(**values)


CONFIG_VARIABLE = f"{ENV_PREFIX}CONFIG"
# variables of the project's own tooling (tests, benchmarks), not settings of the program
_TOOLING_PREFIXES = (f"{ENV_PREFIX}TEST_", f"{ENV_PREFIX}BENCH_")


def known_variables() -> list[str]:
    """Every environment variable the settings read: one per key, `…_FILE` for secrets, and
    REGISTRY_MONITOR_CONFIG."""
    names = [CONFIG_VARIABLE]
    hints = typing.get_type_hints(Settings)
    for section in dataclasses.fields(Settings):
        for field in dataclasses.fields(hints[section.name]):
            name = f"{ENV_PREFIX}{section.name.upper()}_{field.name.upper()}"
            names.append(name)
            if field.metadata.get("secret"):
                names.append(f"{name}_FILE")
    return names


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(variable, the closest known one or None) for each REGISTRY_MONITOR_* variable in
    `environ` that no setting reads (a typo would otherwise be silently ignored)."""
    known = known_variables()
    suffixes = [k[len(ENV_PREFIX) :] for k in known]
    unknown: list[tuple[str, str | None]] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name.startswith(_TOOLING_PREFIXES):
            continue
        # compared without the common prefix, which would make everything look alike
        closest = difflib.get_close_matches(name[len(ENV_PREFIX) :], suffixes, n=1, cutoff=0.6)
        unknown.append((name, ENV_PREFIX + closest[0] if closest else None))
    return unknown


def load_settings(environ: Mapping[str, str], config_file: Path | None = None) -> Settings:
    """Settings from `config_file` (YAML, optional) overridden by `environ`; validated."""
    document: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {config_file}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError("--config", f"{config_file} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("--config", f"{config_file} must hold a mapping of sections")
        document = loaded
    sections = {f.name: f for f in dataclasses.fields(Settings)}
    for name in document:
        if name not in sections:
            raise ConfigError(str(name), "unknown section")
    built: dict[str, Any] = {}
    for name in sections:
        section = document.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(name, "must be a mapping")
        cls = typing.get_type_hints(Settings)[name]
        built[name] = _build_section(cls, name, section, environ)
    settings = Settings(**built)
    validate(settings)
    return settings


def _masked_url(url: str) -> str:
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def to_document(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets masked (for `check-config`)."""
    out: dict[str, Any] = {}
    for section_field in dataclasses.fields(settings):
        section = getattr(settings, section_field.name)
        rendered: dict[str, Any] = {}
        for field in dataclasses.fields(section):
            value = getattr(section, field.name)
            if section_field.name == "database" and field.name == "url":
                value = _masked_url(section.effective_url())
            elif isinstance(value, Secret):
                value = "***"
            elif isinstance(value, list):
                value = ["***" if isinstance(v, Secret) else v for v in value]
            elif isinstance(value, Path):
                value = str(value)
            rendered[field.name] = value
        out[section_field.name] = rendered
    return out


def reference() -> list[tuple[str, str, str, str]]:
    """(YAML key, environment variable, default, meaning) for every setting, for the README."""
    rows: list[tuple[str, str, str, str]] = []
    for section_field in dataclasses.fields(Settings):
        cls = typing.get_type_hints(Settings)[section_field.name]
        for field in dataclasses.fields(cls):
            if field.default is not dataclasses.MISSING:
                default = field.default
            else:
                default = field.default_factory()  # type: ignore[operator]
            shown = "" if default in (None, [], {}) else str(default)
            env = f"{ENV_PREFIX}{section_field.name.upper()}_{field.name.upper()}"
            rows.append((f"{section_field.name}.{field.name}", env, shown, field.metadata["doc"]))
    return rows


def reference_table() -> str:
    """The configuration reference as a Markdown table (the README holds this verbatim)."""
    lines = ["| key | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for key, env, default, doc in reference():
        shown = f"`{default}`" if default else ""
        lines.append(f"| `{key}` | `{env}` | {shown} | {doc} |")
    return "\n".join(lines)
