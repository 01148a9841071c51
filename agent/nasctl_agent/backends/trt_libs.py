"""The TensorRT Python API's libraries, imported lazily: ``tensorrt`` and ``cuda-python``
(extra ``nasctl-agent[tensorrt]``), with the error a missing one gives."""

from __future__ import annotations

from typing import Any

from nasctl_agent.backends import trt_common as tc
from nasctl_agent.errors import MissingBackendError, ModelError

TRT_MISSING = (
    "the TensorRT Python module is not importable: on a Jetson install JetPack's "
    "python3-libnvinfer; elsewhere NVIDIA's tensorrt wheel (or use the trtexec backend)"
)


def trt() -> Any:
    try:
        import tensorrt
    except ImportError as e:
        raise MissingBackendError(TRT_MISSING) from e
    return tensorrt


def cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as e:
            raise MissingBackendError(
                "cuda-python is needed next to TensorRT (pip install 'nasctl-agent[tensorrt]')"
            ) from e
    return runtime


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def version() -> tc.Version:
    return tc.parse_version(trt().__version__)


def check(result: Any) -> Any:
    """Unwrap a cuda-python ``(err, *values)`` tuple, raising :class:`ModelError` on error."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise ModelError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)
