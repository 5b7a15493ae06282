from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.slack_server import SlackServer, running


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    """A fake Slack on 127.0.0.1, stopped after the test."""
    yield from running()
