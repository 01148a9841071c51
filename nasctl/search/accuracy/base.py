"""The accuracy-estimator contract and registry (``--accuracy NAME``).

An estimator turns a genotype (and its graph) into one number, higher is better: a table's test
accuracy in percent, a training-free proxy score, or a short training run's validation accuracy.
The search loop calls :meth:`AccuracyEstimator.estimate` once per distinct genotype; an estimator
that raises marks that candidate as failed and the search goes on.

Names: ``nb201:cifar10|cifar100|imagenet16`` (tables), ``proxy:synflow|naswot`` (training-free,
CPU), ``train:digits`` / ``train:folder:DIR`` (a short real training run of the candidate at its
space's proxy-training size on scikit-learn's digits or the user's images) and
``python:package.module:function`` (``function(genotype: str, graph: Graph) -> float``).
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from nasctl.arch.graph import Graph
from nasctl.errors import SearchError
from nasctl.spaces.base import SearchSpace

_FACTORIES: dict[str, Callable[[str], AccuracyEstimator]] = {}


class AccuracyEstimator(ABC):
    """Scores architectures; higher is better. ``unit`` says what the number is."""

    name: str = ""
    unit: str = ""

    def check_space(self, space: SearchSpace) -> None:  # noqa: B027 - optional hook
        """Raise :class:`SearchError` when this estimator cannot score ``space``."""

    @abstractmethod
    def estimate(self, genotype: str, graph: Graph | None, space: SearchSpace) -> float:
        """The score of one architecture. ``graph`` is ``space.to_graph(genotype)`` when the
        estimator set :attr:`needs_graph`, else None."""

    #: whether :meth:`estimate` needs the graph (built by the caller, once per genotype).
    needs_graph: bool = True
    #: whether an estimate costs microseconds (a table lookup): the loop may then score every
    #: genotype of a small enumerable space (``score_all`` left on auto).
    cheap: bool = False
    #: at most this many new candidates per refinement step of the loop (``--refine-cap`` is
    #: lowered to it): estimators that cost seconds per candidate (``train:*``) set it, so that
    #: refining around the top candidates does not dominate a run. None: no limit of its own.
    refine_cap: int | None = None


def register_estimator(prefix: str) -> Callable[[Callable[[str], AccuracyEstimator]], object]:
    """Register a factory ``f(argument) -> AccuracyEstimator`` for names ``prefix:argument``."""

    def deco(factory: Callable[[str], AccuracyEstimator]) -> object:
        _FACTORIES[prefix] = factory
        return factory

    return deco


def list_estimators() -> list[str]:
    """The estimator names users can pass to ``--accuracy``."""
    return [
        "nb201:cifar10",
        "nb201:cifar100",
        "nb201:imagenet16",
        "proxy:synflow",
        "proxy:naswot",
        "train:digits",
        "train:folder",
        "python:package.module:function",
    ]


def get_estimator(name: str) -> AccuracyEstimator:
    """The estimator called ``name`` (see the module docstring)."""
    prefix, sep, arg = name.partition(":")
    if not sep or prefix not in _FACTORIES:
        raise SearchError(
            f"unknown accuracy estimator {name!r}; expected one of {', '.join(list_estimators())}"
        )
    return _FACTORIES[prefix](arg)


def data_dir() -> Path:
    """``$NASCTL_DATA_DIR``, else the first existing ``shared/data`` beside the cwd or repo."""
    env = os.environ.get("NASCTL_DATA_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    cands = [
        Path.cwd().parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
        repo.parent / "shared" / "data",
    ]
    return next((c for c in cands if c.is_dir()), cands[-1])


class PythonEstimator(AccuracyEstimator):
    """A user's function ``module:function`` called as ``function(genotype, graph) -> float``."""

    unit = "user score"

    def __init__(self, target: str) -> None:
        mod_name, sep, attr = target.rpartition(":")
        if not sep or not mod_name or not attr:
            raise SearchError(
                f"python estimator {target!r} must look like python:package.module:function"
            )
        try:
            fn = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise SearchError(f"cannot load accuracy estimator python:{target}: {e}") from e
        if not callable(fn):
            raise SearchError(f"python:{target} is not callable")
        self.fn = fn
        self.name = f"python:{target}"

    def estimate(self, genotype: str, graph: Graph | None, space: SearchSpace) -> float:
        value = float(self.fn(genotype, graph))
        if value != value:  # NaN
            raise SearchError(f"{self.name} returned NaN for {genotype}")
        return value


register_estimator("python")(PythonEstimator)
