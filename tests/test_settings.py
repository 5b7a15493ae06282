"""Settings: defaults, YAML, environment overrides, secrets from files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitor.errors import ConfigError
from monitor.settings import Secret, load_settings, to_document
from tests.console import run_console


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
            ({"REGISTRY_MONITOR_HTTP_READ_SLOTS": "0"}, "http.read_slots"),
            ({"REGISTRY_MONITOR_HTTP_READ_QUEUE": "-1"}, "http.read_queue"),
            ({"REGISTRY_MONITOR_HTTP_READ_WAIT_SECONDS": "0"}, "http.read_wait_seconds"),
            (
                {"REGISTRY_MONITOR_HTTP_SWITCH_INTERVAL_SECONDS": "0"},
                "http.switch_interval_seconds",
            ),
            ({"REGISTRY_MONITOR_DATABASE_URL": "mysql://x"}, "database.url"),
            (
                {"REGISTRY_MONITOR_DATABASE_MIGRATE_ON_START": "perhaps"},
                "database.migrate_on_start",
            ),
            ({"REGISTRY_MONITOR_LOGGING_LEVEL": "loud"}, "logging.level"),
            ({"REGISTRY_MONITOR_API_TOKEN_FILE": "/nonexistent"}, "api.token_file"),
            ({"REGISTRY_MONITOR_RETENTION_EVENTS_DAYS": "0"}, "retention.events_days"),
            ({"REGISTRY_MONITOR_NOTIFICATIONS_INBOX_FILE": "/"}, "notifications.inbox_file"),
            (
                {
                    "REGISTRY_MONITOR_DATABASE_URL": "sqlite:////srv/store.db",
                    "REGISTRY_MONITOR_NOTIFICATIONS_INBOX_FILE": "/srv/store.db.intake",
                },
                "notifications.inbox_file",
            ),
            (
                {
                    "REGISTRY_MONITOR_DATABASE_URL": "sqlite:///store.db",
                    "REGISTRY_MONITOR_NOTIFICATIONS_INBOX_FILE": "store.db",
                },
                "notifications.inbox_file",
            ),
            (
                {
                    "REGISTRY_MONITOR_DATABASE_URL": "sqlite:////srv/store.db",
                    "REGISTRY_MONITOR_NOTIFICATIONS_INBOX_FILE": "/srv/store.db.intake-2",
                },
                "notifications.inbox_file",
            ),
            (
                {
                    "REGISTRY_MONITOR_DATABASE_URL": "sqlite:////srv/store-2",
                    "REGISTRY_MONITOR_NOTIFICATIONS_INBOX_FILE": "/srv/store",
                },
                "notifications.inbox_file",
            ),
            ({"REGISTRY_MONITOR_RETENTION_SCHEDULE": "17 3 * *"}, "retention.schedule"),
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


class TestFileSettings:
    """Settings whose own name ends in `_file` are settings; only secrets have a `_file` form."""

    @pytest.mark.parametrize(
        ("section", "key"),
        [
            ("detect", "rules_file"),
            ("detect", "roles_file"),
            ("cleanup", "policies_file"),
            ("cleanup", "deployed_file"),
            ("cleanup", "ca_file"),
            ("notifications", "inbox_file"),
        ],
    )
    def test_a_file_setting_is_read_from_yaml(self, tmp_path: Path, section: str, key: str) -> None:
        """`detect: {rules_file: …}` and the like are kept as the path they name."""
        target = write(tmp_path / "target", "{}\n")
        config = write(tmp_path / "c.yml", f"{section}:\n  {key}: {target}\n")
        settings = load_settings({}, config)
        assert target == getattr(getattr(settings, section), key)

    def test_an_inbox_file_beside_the_store_under_another_name_is_accepted(
        self, tmp_path: Path
    ) -> None:
        """Only the store's own files are refused: another file in its directory is fine."""
        settings = load_settings(
            {
                "REGISTRY_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
                "REGISTRY_MONITOR_NOTIFICATIONS_INBOX_FILE": str(tmp_path / "replica.intake"),
            }
        )
        assert tmp_path / "replica.intake" == settings.notifications.inbox_file

    def test_a_setting_that_is_not_secret_has_no_file_form(self, tmp_path: Path) -> None:
        """`cleanup.username_file` is refused (username is not a secret), never ignored."""
        config = write(tmp_path / "c.yml", "cleanup:\n  username_file: /nonexistent\n")
        with pytest.raises(ConfigError) as caught:
            load_settings({}, config)
        assert (
            "cleanup.username_file",
            "unknown setting: cleanup.username is not a secret, so it has no _file form",
        ) == (caught.value.key, caught.value.reason)

    def test_a_missing_secret_file_names_the_setting_and_path(self, tmp_path: Path) -> None:
        """`password_file` naming no file is an error, never an unset password."""
        missing = tmp_path / "nope"
        config = write(tmp_path / "c.yml", f"cleanup:\n  username: u\n  password_file: {missing}\n")
        with pytest.raises(ConfigError) as caught:
            load_settings({}, config)
        assert (
            "cleanup.password_file",
            f"cannot read secret file {missing}: No such file or directory",
        ) == (caught.value.key, caught.value.reason)

    def test_an_empty_secret_file_is_refused(self, tmp_path: Path) -> None:
        """An empty secret file would silently unset the secret; it is an error instead."""
        empty = write(tmp_path / "empty", "\n")
        with pytest.raises(ConfigError) as caught:
            load_settings({"REGISTRY_MONITOR_NOTIFICATIONS_TOKENS_FILE": str(empty)})
        assert ("notifications.tokens_file", f"secret file {empty} is empty") == (
            caught.value.key,
            caught.value.reason,
        )

    def test_a_secret_and_its_file_together_are_refused(self, tmp_path: Path) -> None:
        """Two sources for one secret in the same file is ambiguous."""
        token = write(tmp_path / "token", "t\n")
        config = write(tmp_path / "c.yml", f"api:\n  token: x\n  token_file: {token}\n")
        with pytest.raises(ConfigError) as caught:
            load_settings({}, config)
        assert ("api.token_file", "set api.token or api.token_file, not both") == (
            caught.value.key,
            caught.value.reason,
        )


TOKEN = {"REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "t"}


class TestFileSettingsFromTheCommandLine:
    def test_check_config_accepts_every_file_setting(self, tmp_path: Path) -> None:
        """The README's `*_file` settings in one YAML file: check-config prints them, exit 0."""
        files = {name: write(tmp_path / name, "{}\n") for name in ("rules", "roles", "p", "d")}
        ca = write(tmp_path / "ca.pem", "")
        config = write(
            tmp_path / "c.yml",
            f"detect:\n  rules_file: {files['rules']}\n  roles_file: {files['roles']}\n"
            f"cleanup:\n  policies_file: {files['p']}\n  deployed_file: {files['d']}\n"
            f"  ca_file: {ca}\n",
        )
        done = run_console("check-config", "--config", str(config), cwd=tmp_path, env=TOKEN)
        printed = yaml.safe_load(done.stdout)
        assert (0, "") == (done.returncode, done.stderr)
        assert [str(files["rules"]), str(files["roles"])] == [
            printed["detect"]["rules_file"],
            printed["detect"]["roles_file"],
        ]
        assert [str(files["p"]), str(files["d"]), str(ca)] == [
            printed["cleanup"]["policies_file"],
            printed["cleanup"]["deployed_file"],
            printed["cleanup"]["ca_file"],
        ]

    def test_a_missing_secret_file_stops_the_program(self, tmp_path: Path) -> None:
        """One line naming the setting and the path, exit status 2."""
        config = write(
            tmp_path / "c.yml", "cleanup:\n  username: u\n  password_file: /nonexistent\n"
        )
        done = run_console("check-config", "--config", str(config), cwd=tmp_path)
        assert (
            2,
            "",
            "registry-monitor: invalid setting cleanup.password_file: cannot read secret file "
            "/nonexistent: No such file or directory\n",
        ) == (done.returncode, done.stdout, done.stderr)

    def test_a_file_form_of_a_plain_setting_stops_the_program(self, tmp_path: Path) -> None:
        """`username_file` is refused with why, exit status 2."""
        config = write(tmp_path / "c.yml", "cleanup:\n  username_file: /nonexistent\n")
        done = run_console("check-config", "--config", str(config), cwd=tmp_path)
        assert (
            2,
            "registry-monitor: invalid setting cleanup.username_file: unknown setting: "
            "cleanup.username is not a secret, so it has no _file form\n",
        ) == (done.returncode, done.stderr)
