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


@pytest.fixture(autouse=True)
def _private_device_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests never read or write the user's noise gates (``$NASCTL_CACHE_DIR``), and ``nasctl
    profile`` does not calibrate a device first (10 probe runs a test) unless a test asks for
    it (tests/test_cli_probe.py sets ``NASCTL_AUTO_CALIBRATE=1``); it does not warn about other
    processes' CPU use (a warning on stderr would land in the JSON a test reads; the warning's
    own tests in tests/test_profiler_contention.py set the threshold)."""
    monkeypatch.setenv("NASCTL_CACHE_DIR", str(tmp_path_factory.mktemp("nasctl-cache")))
    monkeypatch.setenv("NASCTL_AUTO_CALIBRATE", "0")
    monkeypatch.setenv("NASCTL_WARN_OTHER_CPUS", "off")
