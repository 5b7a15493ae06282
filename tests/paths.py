"""Where the shared, real captures live: `<repo>/../shared/fixtures`."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "distribution-2.8"


def fixtures() -> Path:
    if not FIXTURES.is_dir():
        raise RuntimeError(
            f"the shared fixtures are missing: expected {FIXTURES} (the repo's ../shared/fixtures)"
        )
    return FIXTURES
