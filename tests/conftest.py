"""Shared pytest fixtures, and the one place that finds the real public data.

``SHARED_DATA`` is ``$NASCTL_DATA_DIR`` when set, else ``../shared/data`` beside the repository
(NB201/FBNet latency tables, TensorRT exports). Tests take the ``shared_data`` fixture, which
skips when the folder is absent; module-level code (a parametrize list) imports ``SHARED_DATA``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NASCTL_DATA_DIR") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data`` (real public measurements); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set NASCTL_DATA_DIR)")
    return SHARED_DATA
