"""Just enough of the ONNX protobuf to serve a request without the ``onnx`` package (a Jetson
often lacks it): the graph's inputs (name, element type, dimensions) and the external-data
locations of its initializers. Standard library only; the file is memory-mapped, and large
fields (weights) are skipped, never copied.

Field numbers (onnx.proto3): ModelProto.graph = 7; GraphProto.initializer = 5, .input = 11;
ValueInfoProto.name = 1, .type = 2; TypeProto.tensor_type = 1; Tensor.elem_type = 1, .shape = 2;
TensorShapeProto.dim = 1; Dimension.dim_value = 1, .dim_param = 2; TensorProto.name = 8,
.external_data = 13 (StringStringEntryProto key = 1, value = 2), .data_location = 14
(EXTERNAL = 1), .data_type = 2; GraphProto.node = 1; NodeProto.op_type = 4.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Union

from nasctl_agent.errors import ModelError

Dim = Union[int, str, None]

#: TensorProto.DataType -> name (the ones a latency request meets)
ELEM_TYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    16: "bfloat16",
}


FLOAT16 = 10


@dataclass
class InputInfo:
    name: str
    elem_type: int
    dims: list[Dim] = field(default_factory=list)


@dataclass
class ModelInfo:
    inputs: list[InputInfo]
    external: list[str]  # external-data locations, as written in the model
    error: str | None = None  # why the file could not be read (then inputs/external are empty)
    op_types: set[str] = field(default_factory=set)
    float16: bool = False  # an FP16 input or initializer: the model carries FP16 precision

    @property
    def precision(self) -> str | None:
        """The precision written into the model: ``int8`` (Q/DQ nodes), ``fp16`` (FP16 tensors),
        ``fp32``; None when the file could not be read."""
        if self.error:
            return None
        if self.op_types & {"QuantizeLinear", "DequantizeLinear"}:
            return "int8"
        return "fp16" if self.float16 else "fp32"


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf):
            raise ModelError("not an ONNX model: truncated protobuf")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7
        if shift > 63:
            raise ModelError("not an ONNX model: bad varint")


def _fields(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a message; length-delimited values are (start, end)."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
            yield num, wt, val
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ModelError("not an ONNX model: field runs past the end of the file")
            yield num, wt, (pos, pos + n)
            pos += n
        elif wt == 1:
            pos += 8
        elif wt == 5:
            pos += 4
        else:
            raise ModelError(f"not an ONNX model: protobuf wire type {wt}")


def _str(buf: bytes, span: Any) -> str:
    s, e = span
    return bytes(buf[s:e]).decode("utf-8", errors="replace")


def _input(buf: bytes, s: int, e: int) -> InputInfo:
    info = InputInfo("", 0)
    for num, wt, val in _fields(buf, s, e):
        if num == 1 and wt == 2:
            info.name = _str(buf, val)
        elif num == 2 and wt == 2:
            for tnum, twt, tval in _fields(buf, *val):
                if tnum == 1 and twt == 2:  # tensor_type
                    for xnum, xwt, xval in _fields(buf, *tval):
                        if xnum == 1 and xwt == 0:
                            info.elem_type = int(xval)
                        elif xnum == 2 and xwt == 2:
                            info.dims = [
                                _dim(buf, dval)
                                for dnum, dwt, dval in _fields(buf, *xval)
                                if dnum == 1 and dwt == 2
                            ]
    return info


def _dim(buf: bytes, span: Any) -> Dim:
    for num, wt, val in _fields(buf, *span):
        if num == 1 and wt == 0:
            return int(val) if int(val) > 0 else None
        if num == 2 and wt == 2:
            return _str(buf, val)
    return None


def _external(buf: bytes, s: int, e: int) -> str | None:
    location, is_external = None, False
    for num, wt, val in _fields(buf, s, e):
        if num == 14 and wt == 0:
            is_external = val == 1
        elif num == 13 and wt == 2:
            kv = {n: _str(buf, v) for n, w, v in _fields(buf, *val) if w == 2}
            if kv.get(1) == "location":
                location = kv.get(2)
    return location if is_external else None


def parse(buf: bytes) -> ModelInfo:
    """Inputs (initializers excluded) and external-data locations of a serialized ONNX model."""
    inputs: list[InputInfo] = []
    inits: set = set()
    external: list[str] = []
    ops: set = set()
    fp16 = False
    graph = None
    for num, wt, val in _fields(buf):
        if num == 7 and wt == 2:
            graph = val
    if graph is None:
        raise ModelError("not an ONNX model: no graph")
    for num, wt, val in _fields(buf, *graph):
        if num == 11 and wt == 2:
            inputs.append(_input(buf, *val))
        elif num == 1 and wt == 2:
            for n2, w2, v2 in _fields(buf, *val):
                if n2 == 4 and w2 == 2:
                    ops.add(_str(buf, v2))
        elif num == 5 and wt == 2:
            loc = _external(buf, *val)
            for n2, w2, v2 in _fields(buf, *val):
                if n2 == 8 and w2 == 2:
                    inits.add(_str(buf, v2))
                elif n2 == 2 and w2 == 0 and v2 == FLOAT16:
                    fp16 = True
            if loc and loc not in external:
                external.append(loc)
    ins = [i for i in inputs if i.name not in inits]
    fp16 = fp16 or any(i.elem_type == FLOAT16 for i in ins)
    return ModelInfo(ins, external, op_types=ops, float16=fp16)


def parse_file(path: str) -> ModelInfo:
    """:func:`parse` of the file at ``path`` (memory-mapped)."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise ModelError(f"ONNX file {path} is empty")
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return parse(m)  # type: ignore[arg-type]  # mmap reads like bytes
    except OSError as e:
        raise ModelError(f"cannot read ONNX file {path}: {e.strerror or e}") from e
