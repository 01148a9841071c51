"""Peak memory of a search's candidates for ``max_memory_mb`` (MiB, 2**20 bytes): predicted with
an interval, and validated on the device like latency.

* Predicted: the memory model ``train-predictor`` learns next to latency
  (:class:`nasctl.predictor.memory.MemoryModel`, ``DIR/memory/``: the device's measured model
  peak, log MB, with a split-conformal interval at 90 %). Without one, the analytic bound
  (weights plus every activation written, :func:`nasctl.search.objectives.graph_cost_fields`)
  stands in, as a point with no interval (``source`` says which).
* Measured: the device's ``memory.model_peak_bytes`` of each measurement (the cpu device: the
  process's peak RSS over the timed session minus the resident size before it; TensorRT: the
  engine's weights plus its execution context's device memory). A candidate measured without
  one (a replay table, memory marked missing) keeps its prediction, and is counted within the
  limit only when the upper end of its interval is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasctl.errors import PredictorError

MIB = float(1 << 20)


class MemoryEstimator:
    """``estimate(graph) -> (mid, low, high)`` MiB; ``source`` is ``"predicted"`` (a memory
    model) or ``"analytic"`` (the bound, ``low == high``)."""

    def __init__(self, model: Any = None, note: str = "") -> None:
        self.model = model
        self.source = "predicted" if model is not None else "analytic"
        self.note = note

    @classmethod
    def from_predictor_dir(cls, predictor_dir: str | Path | None) -> MemoryEstimator:
        """The memory model of a ``train-predictor`` folder; the analytic bound without one."""
        if not predictor_dir:
            return cls(note="no predictor given: the analytic bound (weights + activations)")
        from nasctl.predictor.memory import MemoryModel

        try:
            return cls(MemoryModel.load(Path(predictor_dir)))
        except PredictorError as e:
            return cls(note=f"{e}; the analytic bound (weights + activations) stands in")

    def estimate(self, graph: Any) -> tuple[float, float, float]:
        return self.estimate_many([graph])[0]

    def estimate_many(self, graphs: list[Any]) -> list[tuple[float, float, float]]:
        """``(mid, low, high)`` MiB per graph (one batch through the memory model)."""
        if not graphs:
            return []
        if self.model is None:
            from nasctl.search.objectives import graph_cost_fields

            bounds = [graph_cost_fields(g)[1] for g in graphs]
            return [(b, b, b) for b in bounds]
        k = 1e6 / MIB
        return [(mb * k, lo * k, hi * k) for mb, lo, hi in self.model.predict(graphs)]


def measured_memory_mib(extra: dict[str, Any] | None) -> float | None:
    """The measured model peak of a stored measurement's ``extra`` (MiB); None when absent."""
    mem = (extra or {}).get("memory") or {}
    peak = mem.get("model_peak_bytes")
    return None if peak is None else float(peak) / MIB
