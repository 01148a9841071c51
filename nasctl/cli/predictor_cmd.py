"""`nasctl train-predictor` and `nasctl predict` (filled by the predictor issue)."""
from __future__ import annotations

from nasctl.cli.common import fail


def train_predictor() -> None:
    fail("not implemented yet")


def predict() -> None:
    fail("not implemented yet")
