"""Load any saved predictor: a device's own (:class:`~nasctl.predictor.inference.Predictor`) or a
few-shot transfer (:class:`~nasctl.predictor.transfer.TransferPredictor`), by its ``kind``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasctl.predictor import artifacts
from nasctl.predictor.inference import Predictor
from nasctl.predictor.transfer import KIND, TransferPredictor


def load_predictor(path: str | Path) -> Any:
    """The predictor saved in ``path`` (either kind; both answer ``predict``,
    ``predict_genotypes`` and ``check_device``)."""
    meta, texts, blobs = artifacts.read_dir(Path(path))
    if meta.get("kind") == KIND:
        return TransferPredictor.from_dir(Path(path), meta, texts, blobs)
    return Predictor.load(path)
