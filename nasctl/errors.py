"""One exception hierarchy. Messages say what happened, what was expected and how to fix it."""

from __future__ import annotations


class NasctlError(Exception):
    """Root of every error nasctl reports to a user (printed as one line, exit code 1)."""


class GraphError(NasctlError):
    """An architecture graph is malformed or cannot be built/read."""


class OnnxReadError(GraphError):
    """An ONNX file is missing, empty, truncated or not ONNX."""


class SpaceError(NasctlError):
    """Unknown search space, a genotype that does not parse, a value out of range."""


class DeviceError(NasctlError):
    """Unknown device, or a device that cannot run here (missing runtime)."""


class BackendError(NasctlError):
    """A backend failed to build or run a model."""


class StoreError(NasctlError):
    """The measurement store is locked, corrupt, or of an unsupported schema."""


class PredictorError(NasctlError):
    """Predictor cannot be trained, loaded, or asked this question."""


class SearchError(NasctlError):
    """The search loop cannot proceed."""


class StoreLockedError(StoreError):
    """Another process held the store's write lock longer than the store's timeout."""
