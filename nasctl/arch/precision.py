"""Precision written into the model: FP32 ONNX -> FP16 ONNX or explicit Q/DQ INT8 ONNX, with
ONNX Runtime's own, maintained tools (no home-made quantizer):

- FP16: ``onnxruntime.transformers.float16.convert_float_to_float16`` (weights and compute in
  half; graph inputs/outputs stay FP32 unless ``keep_io_types=False``).
- INT8: ``onnxruntime.quantization.quantize_static`` with ``QuantFormat.QDQ``: weights signed
  INT8, symmetric, per-channel; activations by ``activations``: ``"int8"`` (signed, symmetric,
  zero point 0: what TensorRT's explicit quantization needs; the default) or ``"uint8"``
  (unsigned, asymmetric: ONNX Runtime's fast x86 CPU path, U8S8; the ``cpu`` device's choice,
  since ORT runs symmetric int8 activations slower than FP32, see docs/benchmarks.md #15; its
  weights use 7 bits on an x86 host without VNNI, :func:`needs_reduce_range`);
  MinMax calibration on the user's data (a folder of ``.npy``
  input batches) or, when none is given, on stated random data (``N(0, 1)``, seeded): the
  :class:`Calibration` returned says which.

Before quantizing, ONNX Runtime's basic optimizations fold BatchNormalization into convolutions
(the scales are those of the folded weights, as on any INT8 engine). Node names survive: the
original nodes keep their names, ``QuantizeLinear``/``DequantizeLinear``
nodes are named after the tensor they quantize (``<tensor>_QuantizeLinear``), so ORT's fused
``QLinearConv`` kernels and TensorRT's layers map back to graph nodes.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from nasctl.errors import GraphError

PRECISIONS = ("fp32", "fp16", "int8")
#: random calibration batches when the user gives no data
RANDOM_CALIB_BATCHES = 8
#: activation encodings of :func:`to_int8`
ACTIVATIONS = ("int8", "uint8")


@dataclass
class Calibration:
    """What INT8 scales were computed from: ``source`` ``"npy"`` (``path``, ``files``) or
    ``"random"`` (``batches`` draws of N(0, 1) with ``seed``), the method, the batches used."""

    source: str
    batches: int
    method: str = "MinMax"
    activations: str = "int8"
    path: str | None = None
    files: list[str] = field(default_factory=list)
    seed: int | None = None
    #: weights quantized to 7 bits (ONNX Runtime's ``reduce_range``, :func:`needs_reduce_range`)
    reduce_range: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "source": self.source,
            "batches": self.batches,
            "method": self.method,
            "activations": self.activations,
            "weights": "int8 symmetric per-channel"
            + (", 7-bit range (reduce_range: x86 host without VNNI)" if self.reduce_range else ""),
        }
        if self.path is not None:
            d["path"], d["files"] = self.path, self.files
        if self.seed is not None:
            d["seed"] = self.seed
            d["note"] = "random N(0,1) inputs: INT8 scales are not fitted to real data"
        return d


def _inputs(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, tuple[int, ...]] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim
        ]
        out[vi.name] = tuple(max(1, int(d)) for d in dims)
    return out


def _npy_batches(
    folder: Path, shapes: dict[str, tuple[int, ...]]
) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    if not folder.is_dir():
        raise GraphError(
            f"calibration data {folder} is not a folder; give a folder of .npy input batches"
        )
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise GraphError(f"calibration folder {folder} holds no .npy files; add input batches")
    if len(shapes) != 1:
        raise GraphError(
            f"calibration from .npy files needs a model with one input; this one has {len(shapes)}"
        )
    ((name, shape),) = shapes.items()
    batches = []
    for f in files:
        try:
            a = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise GraphError(f"cannot read calibration file {f}: {e}") from None
        if a.ndim == len(shape) - 1:
            a = a[None]
        if tuple(a.shape[1:]) != tuple(shape[1:]):
            raise GraphError(
                f"calibration file {f.name} has shape {tuple(a.shape)}; the model's input "
                f"{name!r} is {tuple(shape)} (batch first): write batches of that shape"
            )
        for i in range(0, a.shape[0], max(1, shape[0])):
            batches.append({name: np.ascontiguousarray(a[i : i + shape[0]], dtype=np.float32)})
    return batches, [f.name for f in files]


def calibration_batches(
    model: onnx.ModelProto, calib_data: str | Path | None, seed: int = 0
) -> tuple[list[dict[str, np.ndarray]], Calibration]:
    """Input batches for calibration and the record of where they came from."""
    shapes = _inputs(model)
    if calib_data is not None:
        batches, files = _npy_batches(Path(calib_data), shapes)
        return batches, Calibration("npy", len(batches), path=str(calib_data), files=files)
    rng = np.random.default_rng(seed)
    batches = [
        {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        for _ in range(RANDOM_CALIB_BATCHES)
    ]
    return batches, Calibration("random", len(batches), seed=seed)


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of feeds."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def to_fp16(model: onnx.ModelProto, keep_io_types: bool = True) -> onnx.ModelProto:
    """FP16 weights and compute (``keep_io_types``: graph inputs/outputs stay FP32)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = convert_float_to_float16(model, keep_io_types=keep_io_types, disable_shape_infer=False)
    _set_prop(out, "nasctl_precision", "fp16")
    return out  # type: ignore[no-any-return]


class _DropPreprocessHint(logging.Filter):
    """ORT's quantizer asks on the root logger, for every model, to run its pre-processing;
    :func:`_fold` already ran it (the hint only checks a marker in the model). It also warns,
    once per run of a calibration, that a BatchNormalization left unfolded (one not after a
    conv, e.g. NB201's head) has a rank-1 weight with no channel axis 1: it quantizes that
    weight per tensor instead, which is what a 1-D weight is. Both are dropped; other
    records pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "pre-processing" in msg:
            return False
        return not ("is out-of-range for weight" in msg and "with rank 1" in msg)


@contextlib.contextmanager
def _quiet_preprocess_hint() -> Iterator[None]:
    flt = _DropPreprocessHint()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def needs_reduce_range() -> bool:
    """Whether ONNX Runtime on this host needs 7-bit weights for its U8S8 int8 kernels: an x86
    CPU without VNNI (``avx512_vnni`` / ``avx_vnni`` / ``amx_int8``) computes them with 16-bit
    intermediate sums (``vpmaddubsw``) that saturate on full-range weights, so ORT's quantization
    guide asks for ``reduce_range`` there. Measured on an AVX2 host: a small conv net's INT8
    output was 22 % off FP32 without it, 2 % with it (tests/test_precision.py). Other
    architectures: False; an x86 host whose flags cannot be read: True (the safe side)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return not any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def to_int8(
    model: onnx.ModelProto,
    calib_data: str | Path | None = None,
    seed: int = 0,
    activations: str = "int8",
) -> tuple[onnx.ModelProto, Calibration]:
    """Explicit Q/DQ INT8 (symmetric, per-channel weights), calibrated on ``calib_data`` (a
    folder of ``.npy`` batches) or on stated random data. Raises :class:`GraphError` for
    calibration data that is missing or of the wrong shape, or a model ORT cannot quantize."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if activations not in ACTIVATIONS:
        raise GraphError(
            f"activations must be one of {', '.join(ACTIVATIONS)}; got {activations!r}"
        )
    batches, calib = calibration_batches(model, calib_data, seed)
    calib.activations = activations + (" symmetric" if activations == "int8" else " asymmetric")
    act_type = QuantType.QInt8 if activations == "int8" else QuantType.QUInt8
    # uint8 activations are ORT's cpu form (run on this host): 7-bit weights where its kernels
    # would saturate; int8 ones are TensorRT's form (run on the target): full-range weights
    calib.reduce_range = activations == "uint8" and needs_reduce_range()
    with tempfile.TemporaryDirectory(prefix="nasctl-q-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save_model(model, str(src))
        try:
            _fold(src, pre)
            with _quiet_preprocess_hint():
                quantize_static(
                    str(pre),
                    str(dst),
                    _Reader(batches),
                    quant_format=QuantFormat.QDQ,
                    activation_type=act_type,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    reduce_range=calib.reduce_range,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={
                        "ActivationSymmetric": activations == "int8",
                        "WeightSymmetric": True,
                    },
                )
        except Exception as e:  # ORT's tools raise plain exceptions
            msg = " ".join(str(e).split())[:300]
            raise GraphError(f"ONNX Runtime could not quantize the model to INT8: {msg}") from e
        out = onnx.load_model(str(dst))
    _set_prop(out, "nasctl_precision", "int8")
    _set_prop(out, "nasctl_calibration", calib.source)
    return out, calib


def _fold(src: Path, dst: Path) -> None:
    """ONNX Runtime's basic graph optimizations (BatchNormalization folded into the convolution,
    constants folded), written to ``dst``: what any engine does before running INT8, so the
    scales are computed on the folded weights. Node names are kept; folded nodes disappear."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def with_precision(
    model: onnx.ModelProto,
    precision: str,
    calib_data: str | Path | None = None,
    seed: int = 0,
    activations: str = "int8",
) -> tuple[onnx.ModelProto, Calibration | None]:
    """``model`` (FP32) at ``precision``; the calibration record for INT8, else None
    (``activations``: see :func:`to_int8`)."""
    if precision == "fp32":
        return model, None
    if precision == "fp16":
        return to_fp16(model), None
    if precision == "int8":
        return to_int8(model, calib_data, seed, activations)
    raise GraphError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")


def _set_prop(model: onnx.ModelProto, key: str, value: str) -> None:
    for p in model.metadata_props:
        if p.key == key:
            p.value = value
            return
    model.metadata_props.add(key=key, value=value)
