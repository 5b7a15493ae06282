"""Settings: defaults, YAML, environment overrides, secrets from files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.settings import Secret, load_settings, to_document


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class TestLoadSettings:
    def test_defaults(self) -> None:
        """With nothing set: SQLite in ./data, loopback port 5080, no tokens."""
        settings = load_settings({})
        assert "127.0.0.1:5080" == settings.http.addr
        assert settings.database.effective_url().startswith("sqlite:///data/")
        assert [] == settings.notifications.tokens
        assert settings.api.token is None

    def test_the_environment_overrides_the_file(self, tmp_path: Path) -> None:
        """REGISTRY_MONITOR_<SECTION>_<KEY> wins over the YAML file."""
        config = write(
            tmp_path / "c.yml", "http:\n  addr: 0.0.0.0:9000\napi:\n  token: from-file\n"
        )
        settings = load_settings({"REGISTRY_MONITOR_HTTP_ADDR": "127.0.0.2:7000"}, config)
        assert ("127.0.0.2:7000", Secret("from-file")) == (settings.http.addr, settings.api.token)

    def test_acceptance_variables(self) -> None:
        """The four variables the acceptance checks use all work."""
        settings = load_settings(
            {
                "REGISTRY_MONITOR_DATABASE_URL": "postgresql+psycopg://u:p@db/monitor",
                "REGISTRY_MONITOR_HTTP_ADDR": "127.0.0.1:6000",
                "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "one, two ,three",
                "REGISTRY_MONITOR_API_TOKEN": "reader",
            }
        )
        assert "postgresql+psycopg://u:p@db/monitor" == settings.database.effective_url()
        assert 6000 == settings.http.port
        assert ["one", "two", "three"] == [t.reveal() for t in settings.notifications.tokens]
        assert settings.api.token is not None
        assert "reader" == settings.api.token.reveal()

    def test_secrets_from_files(self, tmp_path: Path) -> None:
        """A secret can come from a file, by YAML `<key>_file` or `…_FILE` in the environment."""
        token = write(tmp_path / "token", "file-token\n")
        url = write(tmp_path / "url", "sqlite:///x.db\n")
        config = write(tmp_path / "c.yml", f"notifications:\n  tokens_file: {token}\n")
        settings = load_settings({"REGISTRY_MONITOR_DATABASE_URL_FILE": str(url)}, config)
        assert ["file-token"] == [t.reveal() for t in settings.notifications.tokens]
        assert "sqlite:///x.db" == settings.database.effective_url()

    def test_secrets_never_show(self) -> None:
        """repr and the printed document hide secrets; the database password is masked."""
        settings = load_settings(
            {
                "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "hunter2",
                "REGISTRY_MONITOR_DATABASE_URL": "postgresql+psycopg://monitor:pa55@db/monitor",
            }
        )
        assert "hunter2" not in repr(settings)
        document = to_document(settings)
        assert ["***"] == document["notifications"]["tokens"]
        assert "postgresql+psycopg://monitor:***@db/monitor" == document["database"]["url"]
        assert "pa55" not in str(document)

    @pytest.mark.parametrize(
        ("environ", "key"),
        [
            ({"REGISTRY_MONITOR_HTTP_ADDR": "nonsense"}, "http.addr"),
            ({"REGISTRY_MONITOR_HTTP_ADDR": "127.0.0.1:99999"}, "http.addr"),
            ({"REGISTRY_MONITOR_HTTP_MAX_BODY_BYTES": "lots"}, "http.max_body_bytes"),
            ({"REGISTRY_MONITOR_HTTP_TLS_CERT": "/nonexistent.pem"}, "http.tls_cert"),
            ({"REGISTRY_MONITOR_DATABASE_URL": "mysql://x"}, "database.url"),
            (
                {"REGISTRY_MONITOR_DATABASE_MIGRATE_ON_START": "perhaps"},
                "database.migrate_on_start",
            ),
            ({"REGISTRY_MONITOR_LOGGING_LEVEL": "loud"}, "logging.level"),
            ({"REGISTRY_MONITOR_API_TOKEN_FILE": "/nonexistent"}, "api.token"),
            ({"REGISTRY_MONITOR_RETENTION_EVENTS_DAYS": "0"}, "retention.events_days"),
        ],
    )
    def test_an_invalid_setting_names_its_key(self, environ: dict[str, str], key: str) -> None:
        """Every invalid value is a ConfigError that names the key."""
        with pytest.raises(ConfigError) as caught:
            load_settings(environ)
        assert key == caught.value.key

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("nope: {}\n", "nope"),
            ("http:\n  port: 80\n", "http.port"),
            ("http: 5\n", "http"),
            ("- a\n", "--config"),
            ("http: [\n", "--config"),
        ],
    )
    def test_an_invalid_file_names_the_problem(self, tmp_path: Path, text: str, key: str) -> None:
        """Unknown sections or keys and malformed YAML are refused with where they are."""
        with pytest.raises(ConfigError) as caught:
            load_settings({}, write(tmp_path / "c.yml", text))
        assert key == caught.value.key
