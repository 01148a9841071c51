"""A prior for one precision's latency model from another precision's (issue #15): the twin
prior of a search over precisions.

``nasctl search --precision fp32,int8`` runs one loop per precision, one after the other; each
later loop starts with a handful of its own measurements (3 to 6 at ``--device-budget 20``), and
a Gaussian process on so few points extrapolates badly (the INT8 loop's model predicted 0.01-0.9
ms for architectures that measured 1.5-8.7 ms, docs/benchmarks.md). The same architecture at
another precision on the same machine is a closer source than any other device: :class:`TwinPrior`
predicts ``genotypes`` with the first loop's latency model, scaled by the median measured ratio of
the twins measured at both precisions (1 until one is), and the later loop's GP models the log
residual of that prior, as it does for a trained predictor. Its log sigma is the source model's
and the ratios' spread (``RATIO_SIGMA`` until two twins are measured) added in quadrature.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: log-sd of the ratio before two twins say otherwise: INT8/FP32 on cpu measured 0.27x-1.4x
#: over mbconv and resnet (docs/benchmarks.md), about a factor of 1.65 either way
RATIO_SIGMA = 0.5


class TwinPrior:
    """``genotypes -> (log mean, log sigma)`` from ``source`` (a latency model with ``predict``
    and ``log_sigma``) times the median of ``ratios()`` (this precision's measured ms over the
    source precision's, per architecture measured at both)."""

    def __init__(self, source: Any, ratios: Callable[[], list[float]]) -> None:
        self.source = source
        self.ratios = ratios

    def __call__(self, genotypes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        mean, low, high = self.source.predict(list(genotypes))
        logs = [math.log(r) for r in self.ratios() if r > 0 and math.isfinite(r)]
        shift = statistics.median(logs) if logs else 0.0
        s_ratio = statistics.stdev(logs) if len(logs) >= 2 else RATIO_SIGMA
        s_src = np.asarray(self.source.log_sigma(low, high), dtype=float)
        return np.log(mean) + shift, np.sqrt(s_src**2 + s_ratio**2)
