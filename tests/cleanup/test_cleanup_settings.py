from __future__ import annotations

import pytest

from monitor.cleanup.apply import ApplyOptions, DeleteMode, apply_options
from monitor.errors import ConfigError
from monitor.settings import load_settings

PREFIX = "REGISTRY_MONITOR_CLEANUP_"


class TestCleanupSettings:
    def test_environment_reaches_apply_options(self) -> None:
        """The cleanup section, set from the environment, becomes the apply options."""
        settings = load_settings(
            {
                f"{PREFIX}DELETE_MODE": "tag",
                f"{PREFIX}MAX_DELETIONS": "7",
                f"{PREFIX}MAX_REPOSITORY_SHARE": "0.25",
                f"{PREFIX}CONCURRENCY": "3",
                f"{PREFIX}MIN_INTERVAL_SECONDS": "0",
            }
        )
        expected = ApplyOptions(DeleteMode.TAG, 7, 0.25, 3, 0.0)
        assert expected == apply_options(settings.cleanup)

    @pytest.mark.parametrize(
        ("environ", "key"),
        [
            ({f"{PREFIX}REGISTRY_URL": "registry:5000"}, "cleanup.registry_url"),
            ({f"{PREFIX}USERNAME": "alice"}, "cleanup.username"),
            ({f"{PREFIX}MAX_REPOSITORY_SHARE": "0"}, "cleanup.max_repository_share"),
            ({f"{PREFIX}MAX_DELETIONS": "0"}, "cleanup.max_deletions"),
            ({f"{PREFIX}CONCURRENCY": "0"}, "cleanup.concurrency"),
            ({f"{PREFIX}TIMEOUT_SECONDS": "0"}, "cleanup.timeout_seconds"),
            ({f"{PREFIX}DELETE_MODE": "tags"}, "cleanup.delete_mode"),
        ],
    )
    def test_invalid_values_name_the_key(self, environ: dict[str, str], key: str) -> None:
        """Each invalid cleanup setting raises ConfigError naming its key."""
        with pytest.raises(ConfigError) as info:
            load_settings(environ)
        assert key == info.value.key
