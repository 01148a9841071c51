"""Accuracy estimators (``--accuracy NAME``) and latency models for the search loop."""

from __future__ import annotations

from nasctl.search.estimators.base import (
    AccuracyEstimator,
    data_dir,
    get_estimator,
    list_estimators,
    register_estimator,
)

__all__ = [
    "AccuracyEstimator",
    "data_dir",
    "get_estimator",
    "list_estimators",
    "register_estimator",
]
