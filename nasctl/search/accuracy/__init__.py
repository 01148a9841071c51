"""Accuracy estimators (``--accuracy NAME``): the contract and registry live in ``base``; the
built-in estimators (``tables``, ``proxies``, ``training``) register themselves when this package
imports them below. Heavy libraries (torch, scikit-learn) are imported inside their methods."""

from __future__ import annotations

from nasctl.search.accuracy import proxies, tables, training  # noqa: F401 - registration
from nasctl.search.accuracy.base import (
    AccuracyEstimator,
    get_estimator,
    list_estimators,
    register_estimator,
)

__all__ = [
    "AccuracyEstimator",
    "get_estimator",
    "list_estimators",
    "register_estimator",
]
