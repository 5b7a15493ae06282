"""Where the repository's test data lives, and where the distribution 3.x binary is.

The only module that knows these paths. The real captures are in `tests/fixtures/`
(`distribution-2.8/` from Debian's `docker-registry` 2.8.2, `distribution-3.1/` from upstream
v3.1.1; each has a SCENARIO.md saying what was captured and how). The 3.x registry binary is
not something a package registry can give, so it is found through `REGISTRY_MONITOR_TEST_REGISTRY3`.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES_ROOT = REPO / "tests" / "fixtures"
FIXTURES = FIXTURES_ROOT / "distribution-2.8"
FIXTURES_31 = FIXTURES_ROOT / "distribution-3.1"

REGISTRY3_ENV = "REGISTRY_MONITOR_TEST_REGISTRY3"
REGISTRY3_VERSION = "v3.1.1"
REGISTRY3_HOWTO = (
    f"set {REGISTRY3_ENV} to the path of a CNCF distribution {REGISTRY3_VERSION} registry binary; "
    "build one with Go from the upstream tag: `git clone --branch v3.1.1 --depth 1 "
    "https://github.com/distribution/distribution && cd distribution && CGO_ENABLED=0 go build "
    '-ldflags "-X github.com/distribution/distribution/v3/version.version=v3.1.1" '
    "./cmd/registry` (scripts/test uses ../shared/bin/distribution-registry-3.1.1 when it exists)"
)


def _directory(path: Path) -> Path:
    if not path.is_dir():
        raise AssertionError(f"test fixture missing: {path} (it is part of the repository)")
    return path


def fixtures() -> Path:
    """The distribution 2.8 capture (`tests/fixtures/distribution-2.8`)."""
    return _directory(FIXTURES)


def fixtures_31() -> Path:
    """The distribution 3.1 capture (`tests/fixtures/distribution-3.1`)."""
    return _directory(FIXTURES_31)


def fixture_file(*parts: str, capture: Path = FIXTURES) -> Path:
    """A file inside a capture (2.8 by default); a missing file is a failure, never a skip."""
    path = capture.joinpath(*parts)
    if not path.exists():
        raise AssertionError(f"test fixture missing: {path} (it is part of the repository)")
    return path


def registry3_binary() -> str:
    """The distribution 3.x registry binary named by REGISTRY_MONITOR_TEST_REGISTRY3.

    Fails (AssertionError, never a skip) with how to get it when unset or not an executable.
    """
    value = os.environ.get(REGISTRY3_ENV, "")
    if not value:
        raise AssertionError(f"{REGISTRY3_ENV} is not set: {REGISTRY3_HOWTO}")
    path = Path(value)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise AssertionError(
            f"{REGISTRY3_ENV}={value} is not an executable file: {REGISTRY3_HOWTO}"
        )
    return str(path.resolve())
