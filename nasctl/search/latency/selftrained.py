"""The loop's own ``nasctl`` predictor: GNN + GBDT trained on the search's device measurements.

With ``--bootstrap-model gp+nasctl`` (and no ``--predictor DIR``) the loop trains the real
predictor (:func:`nasctl.predictor.training.fit`, 75% of the measured rows to fit, 25% to weight the
ensemble and calibrate its interval) once it has ``min_rows`` measurements and again every
``every`` new ones; the Gaussian process then models the log residual of that predictor, as it
does for a predictor given with ``--predictor``. Before ``min_rows`` the GP works alone.

Measured on the NB201 replay benchmark (bench/bench_search_nb201.py, variant
``predictor-nasctl``): with 20 to 50 rows the GNN + GBDT is less accurate near the budget than
the GP on op counts alone, and each training takes 10 to 20 s on 2 cores, so the default
bootstrap model is the GP (``gp``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from nasctl.search.latency.models import PredictorPrior
from nasctl.spaces.base import SearchSpace


class SelfTrainedPrior:
    """A prior (``genotypes -> (log mean, log sigma)``) retrained on the loop's measurements."""

    def __init__(
        self,
        space: SearchSpace,
        device_id: str,
        *,
        seed: int = 0,
        min_rows: int = 20,
        every: int = 10,
        gnn_steps: int = 200,
    ) -> None:
        self.space = space
        self.device_id = device_id
        self.seed = seed
        self.min_rows = max(min_rows, 20)  # nasctl.predictor.training.MIN_ROWS
        self.every = every
        self.gnn_steps = gnn_steps
        self.trained_on = 0
        self.trainings = 0
        self._prior: PredictorPrior | None = None
        self.queries = 0

    @property
    def ready(self) -> bool:
        return self._prior is not None

    def maybe_train(self, measured: dict[str, float]) -> bool:
        """Train (again) when enough new measurements arrived; True when it trained."""
        n = len(measured)
        if n < self.min_rows or (self.ready and n - self.trained_on < self.every):
            return False
        from nasctl.predictor import inference, training

        genos = sorted(measured)
        random.Random(self.seed).shuffle(genos)
        graphs = [self.space.to_graph(g) for g in genos]
        ex = inference.examples_from_graphs(graphs)
        y = np.array([float(measured[g]) for g in genos])
        k = max(1, int(round(0.75 * n)))
        pred = training.fit(
            ex[:k],
            y[:k],
            ex[k:],
            y[k:],
            device_id=self.device_id,
            seed=self.seed,
            gnn_steps=self.gnn_steps,
        )
        self._prior = PredictorPrior(None, self.space, predictor=pred)
        self.trained_on = n
        self.trainings += 1
        return True

    def __call__(self, genotypes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        assert self._prior is not None, "maybe_train first"
        self.queries += len(genotypes)
        return self._prior(genotypes)
