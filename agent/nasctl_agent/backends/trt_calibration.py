"""INT8 calibration for the TensorRT Python API backend (TensorRT < 10.1, implicit
quantization): the user's ``.npy`` batches, an ``IInt8EntropyCalibrator2`` whose cache is read
and written atomically (reused across builds), device buffers freed after the build."""

from __future__ import annotations

import glob
import os
import tempfile
from typing import Any

from nasctl_agent.backends.trt_libs import check as _check
from nasctl_agent.backends.trt_libs import cudart as _cudart
from nasctl_agent.backends.trt_libs import trt as _trt
from nasctl_agent.errors import RequestError


# -- calibration ---------------------------------------------------------------------------------
def calibration_batches(folder: str, shapes: dict[str, list[int]]) -> list[dict[str, Any]]:
    """The user's calibration data: ``.npy`` files in ``folder``, sorted by name. With one
    network input each file is one batch of it; with several, files are named
    ``<batch>.<input>.npy``. Every array must have its input's shape (at the request's batch)."""
    import numpy as np

    files = sorted(glob.glob(os.path.join(folder, "*.npy")))
    if not files:
        raise RequestError(f"calibration folder {folder} holds no .npy files")
    names = list(shapes)
    batches: dict[str, dict[str, Any]] = {}
    for f in files:
        stem = os.path.basename(f)[: -len(".npy")]
        if len(names) == 1:
            key, name = stem, names[0]
        else:
            key, _, name = stem.partition(".")
            if name not in shapes:
                raise RequestError(
                    f"calibration file {f}: name it <batch>.<input>.npy with input one of "
                    f"{', '.join(names)}"
                )
        arr = np.load(f, allow_pickle=False)
        if list(arr.shape) != list(shapes[name]):
            raise RequestError(
                f"calibration file {f} has shape {list(arr.shape)}; input {name!r} needs "
                f"{shapes[name]}"
            )
        batches.setdefault(key, {})[name] = np.ascontiguousarray(arr, dtype=np.float32)
    out = [b for _, b in sorted(batches.items())]
    for b in out:
        if set(b) != set(names):
            raise RequestError(f"calibration batch lacks inputs {sorted(set(names) - set(b))}")
    return out


def make_calibrator(batches: list[dict[str, Any]], cache_path: str | None) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``batches``; its cache is read from and written to
    ``cache_path`` (so later builds skip calibration). Call ``free()`` after the build."""
    t, rt = _trt(), _cudart()

    class Calibrator(t.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            t.IInt8EntropyCalibrator2.__init__(self)
            self.batches = batches
            self.index = 0
            first = batches[0]
            self.ptrs = {n: _check(rt.cudaMalloc(max(a.nbytes, 1))) for n, a in first.items()}

        def get_batch_size(self) -> int:
            return 1  # explicit batch networks: the batch is in the shapes

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.batches):
                return None
            batch = self.batches[self.index]
            self.index += 1
            if any(n not in batch for n in names):  # no data (a cache only): nothing to feed
                return None
            for n in names:
                a = batch[n]
                _check(
                    rt.cudaMemcpy(
                        self.ptrs[n],
                        a.ctypes.data,
                        a.nbytes,
                        rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                    )
                )
            return [int(self.ptrs[n]) for n in names]

        def read_calibration_cache(self) -> bytes | None:
            if cache_path and os.path.isfile(cache_path) and os.path.getsize(cache_path) > 0:
                with open(cache_path, "rb") as f:
                    return f.read()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_path:
                write_bytes_atomically(cache_path, bytes(cache))

        def free(self) -> None:
            for p in self.ptrs.values():
                rt.cudaFree(p)
            self.ptrs = {}

    return Calibrator()


def write_bytes_atomically(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
