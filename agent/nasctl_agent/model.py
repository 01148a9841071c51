"""The model a request measures: an ONNX file on disk (its folder holds any external data), or
bytes plus external-data files that :func:`materialize` writes to a private folder.

Models over 2 GB keep their weights in external-data files next to the ``.onnx``; ONNX Runtime and
trtexec both read those relative to the model's path, so every backend measures from a path,
never from bytes, when a model has external data. Before any backend sees such a model,
:func:`check_external_data` refuses locations that leave the model's folder (absolute paths,
``..``, symlinks out), and, where the ``onnx`` package is installed (>= 1.16, the CVE-2024-27318
fix), runs onnx's own checker on the path as well.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, Union

from nasctl_agent import onnx_wire
from nasctl_agent.errors import ModelError, RequestError


@dataclass
class Model:
    """A model: ``path`` of the ``.onnx`` on disk (its folder holds any external data), or
    ``data`` in memory (bytes without external data); ``info`` its inputs, precision and
    external data."""

    path: str
    info: onnx_wire.ModelInfo
    _tmp: str | None = None
    data: bytes | None = None

    @property
    def has_external_data(self) -> bool:
        return bool(self.info.external)

    def read_bytes(self) -> bytes:
        """The ``.onnx`` bytes (without external data)."""
        if self.data is not None:
            return self.data
        with open(self.path, "rb") as f:
            return f.read()

    def file_path(self) -> str:
        """A path to the ``.onnx`` (in-memory models are written to a private folder once)."""
        if not self.path:
            self._tmp = tempfile.mkdtemp(prefix="nasctl-agent-")
            self.path = os.path.join(self._tmp, "model.onnx")
            with open(self.path, "wb") as f:
                f.write(self.data or b"")
        return self.path

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ModelLike = Union[str, "os.PathLike[str]", bytes, bytearray]


def open_model(model: ModelLike, external_data: dict[str, bytes] | None = None) -> Model:
    """A :class:`Model` for a path or for bytes (+ ``external_data``: location -> bytes).
    Raises :class:`ModelError` for an unreadable or corrupt model, unsafe external data."""
    if isinstance(model, (bytes, bytearray)):
        return materialize(bytes(model), external_data or {})
    if external_data:
        raise RequestError("external_data is given with bytes, not with a model path")
    path = os.fspath(model)
    if os.path.isdir(path):
        found = [f for f in sorted(os.listdir(path)) if f.endswith(".onnx")]
        if len(found) != 1:
            raise ModelError(
                f"folder {path} holds {len(found)} .onnx files; name the model file itself"
            )
        path = os.path.join(path, found[0])
    if not os.path.isfile(path):
        raise ModelError(f"ONNX file {path} does not exist")
    m = Model(path=path, info=_info(lambda: onnx_wire.parse_file(path)))
    check_external_data(m)
    return m


def materialize(data: bytes, external_data: dict[str, bytes]) -> Model:
    """Write ``data`` (and its external-data files) to a private temporary folder."""
    if not data:
        raise ModelError("the ONNX model is empty (0 bytes)")
    if not external_data:  # measured from memory; written to a file only if a backend needs one
        return Model(path="", data=data, info=_info(lambda: onnx_wire.parse(data)))
    tmp = tempfile.mkdtemp(prefix="nasctl-agent-")
    try:
        for loc, blob in external_data.items():
            target = _inside(tmp, loc)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(blob)
        path = os.path.join(tmp, "model.onnx")
        with open(path, "wb") as f:
            f.write(data)
        m = Model(path=path, info=_info(lambda: onnx_wire.parse(data)), _tmp=tmp)
        check_external_data(m)
        return m
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _info(parse: Callable[[], onnx_wire.ModelInfo]) -> onnx_wire.ModelInfo:
    """The model's inputs and external data; a file the reader cannot parse is left to the
    engine, whose own message says best what is wrong (an empty file is refused here)."""
    try:
        return parse()
    except ModelError as e:
        if "is empty" in str(e) or "cannot read" in str(e):
            raise
        return onnx_wire.ModelInfo(inputs=[], external=[], error=str(e))


def _inside(folder: str, location: str) -> str:
    """``folder/location`` if ``location`` is a plain relative name that stays in ``folder``
    (symlinks resolved), else :class:`ModelError`."""
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")):
        raise ModelError(f"external data location {location!r} is not a relative path")
    parts = location.replace("\\", "/").split("/")
    if ".." in parts or ":" in parts[0]:
        raise ModelError(f"external data location {location!r} leaves the model's folder")
    base = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(base, location))
    if os.path.commonpath([base, target]) != base:
        raise ModelError(f"external data location {location!r} resolves outside the model's folder")
    return target


def check_external_data(m: Model) -> None:
    """Refuse external data outside the model's folder or missing; run onnx's checker too."""
    if not m.info.external:
        return
    folder = os.path.dirname(os.path.abspath(m.path))
    for loc in m.info.external:
        target = _inside(folder, loc)
        if not os.path.isfile(target):
            raise ModelError(
                f"external data file {loc!r} of {os.path.basename(m.path)} is missing; "
                "keep the model's data files next to it"
            )
    try:
        import onnx
    except ImportError:
        return  # the engine's own loader (ORT / TensorRT's parser) still checks the paths
    try:
        onnx.checker.check_model(m.path)  # a path: external data is checked, not loaded
    except Exception as e:  # onnx.checker.ValidationError and friends
        raise ModelError(f"onnx checker refused {os.path.basename(m.path)}: {_one_line(e)}") from e


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] if text else type(e).__name__
