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
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

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

    def accuracy_se(self, accuracy: float) -> float | None:
        """The standard error of one estimate at ``accuracy`` (the estimator's units), i.e. the
        resolution at which it tells two scores apart; None when unknown (tables, proxies,
        ``python:``: their scores are compared exactly). A search over precisions takes an
        accuracy difference within it between two precisions of one architecture as a tie
        (:func:`nasctl.search.frontier.choose_precisions`)."""
        return None

    def for_precision(self, precision: str, int8_drop: Any = None) -> AccuracyEstimator:
        """This estimator at ``precision`` (issue #15.3). FP32 and FP16: the estimator itself
        (its numbers are FP32 accuracies; FP16 is taken to keep them). INT8: a table or a proxy
        cannot know what quantization costs, so it needs an accuracy-drop model ``int8_drop``
        (:func:`parse_drop`); without one this raises. Training estimators and ``python:``
        estimators that take a precision override this."""
        if precision in ("fp32", "fp16"):
            return self
        if precision == "int8" and int8_drop is not None:
            drop = parse_drop(int8_drop)
            return PrecisionView(
                self,
                precision,
                lambda g, graph, space: self.estimate(g, graph, space) - drop(g, graph),
            )
        raise SearchError(
            f"{self.name} gives FP32 accuracies and cannot score {precision}: give an "
            "accuracy-drop model (int8_drop=POINTS or python:module:function) or an estimator "
            "that measures INT8 (train:digits, train:folder, python: with a precision argument)"
        )


class PrecisionView(AccuracyEstimator):
    """``parent`` at ``precision``: scores with ``fn(genotype, graph, space)``; everything else
    (unit, graph need, refinement cap, space check) is the parent's."""

    def __init__(self, parent: AccuracyEstimator, precision: str, fn: Callable[..., float]):
        self.parent, self.precision, self.fn = parent, precision, fn
        self.name = f"{parent.name}@{precision}"
        self.unit = parent.unit
        self.needs_graph, self.cheap = parent.needs_graph, parent.cheap
        self.refine_cap = parent.refine_cap

    def check_space(self, space: SearchSpace) -> None:
        self.parent.check_space(space)

    def accuracy_se(self, accuracy: float) -> float | None:
        return self.parent.accuracy_se(accuracy)

    def estimate(self, genotype: str, graph: Graph | None, space: SearchSpace) -> float:
        return float(self.fn(genotype, graph, space))


def parse_drop(value: Any) -> Callable[[str, Graph | None], float]:
    """An INT8 accuracy-drop model: a number (points lost by every architecture) or
    ``python:package.module:function`` (``function(genotype, graph) -> points lost``)."""
    if callable(value):
        return value  # type: ignore[no-any-return]
    text = str(value).strip()
    if text.startswith("python:"):
        return _load_callable(text.partition(":")[2], "int8_drop")
    try:
        points = float(text)
    except ValueError:
        raise SearchError(
            f"int8_drop must be a number of points or python:package.module:function; got {text!r}"
        ) from None
    return lambda genotype, graph: points


def _load_callable(target: str, what: str) -> Callable[..., Any]:
    mod_name, sep, attr = target.rpartition(":")
    if not sep or not mod_name or not attr:
        raise SearchError(f"{what} python:{target} must look like python:package.module:function")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise SearchError(f"cannot load {what} python:{target}: {e}") from e
    if not callable(fn):
        raise SearchError(f"python:{target} is not callable")
    return fn  # type: ignore[no-any-return]


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


class PythonEstimator(AccuracyEstimator):
    """A user's function ``module:function`` called as ``function(genotype, graph) -> float``."""

    unit = "user score"

    def __init__(self, target: str) -> None:
        self.fn = _load_callable(target, "accuracy estimator")
        self.name = f"python:{target}"

    def takes_precision(self) -> bool:
        """Whether the function has a ``precision`` parameter (or ``**kwargs``)."""
        try:
            params = inspect.signature(self.fn).parameters.values()
        except (TypeError, ValueError):
            return False
        return any(p.name == "precision" or p.kind is p.VAR_KEYWORD for p in params)

    def for_precision(self, precision: str, int8_drop: Any = None) -> AccuracyEstimator:
        """A function with a ``precision`` parameter is called as ``function(genotype, graph,
        precision="int8")``; others score FP32/FP16 only (or INT8 with ``int8_drop``)."""
        if not self.takes_precision():
            return super().for_precision(precision, int8_drop)

        def score(genotype: str, graph: Graph | None, space: SearchSpace) -> float:
            value = float(self.fn(genotype, graph, precision=precision))
            if value != value:  # NaN
                raise SearchError(f"{self.name} returned NaN for {genotype} at {precision}")
            return value

        return PrecisionView(self, precision, score)

    def estimate(self, genotype: str, graph: Graph | None, space: SearchSpace) -> float:
        value = float(self.fn(genotype, graph))
        if value != value:  # NaN
            raise SearchError(f"{self.name} returned NaN for {genotype}")
        return value


register_estimator("python")(PythonEstimator)
