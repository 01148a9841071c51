"""Latency predictor: features, GNN + GBDT (+ per-layer model), calibrated ensemble, artifacts.

Heavy libraries (torch, torch-geometric, LightGBM) load on first use::

    from nasctl.predictor import Predictor, train
"""

from __future__ import annotations

from typing import Any

__all__ = ["Prediction", "Predictor", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from nasctl.predictor import training

        return training.train
    if name in __all__:
        from nasctl.predictor import inference

        return getattr(inference, name)
    raise AttributeError(name)
