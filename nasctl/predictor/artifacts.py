"""Predictor artifacts on disk, without pickle.

A predictor directory holds ``meta.json`` (device id, feature schema, training set size, library
versions, ensemble weights, interval quantiles, model configs), ``gbdt.txt`` (LightGBM text model),
``gnn.pt`` (a torch ``state_dict`` loaded with ``weights_only=True``), optionally ``layerwise.txt``,
and ``manifest.json``: the SHA-256 of every other file. Loading checks the manifest first, so a
missing or modified file is a :class:`PredictorError`, not a wrong prediction. A manifest entry
that is not a plain file name inside the folder (``../x``, an absolute path, a symlink out of the
folder) is refused before any file is read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from nasctl.errors import PredictorError

FORMAT = "nasctl-predictor"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
META = "meta.json"


def library_versions() -> dict[str, str]:
    """Versions of the libraries a predictor depends on."""
    import platform

    import lightgbm
    import numpy
    import torch
    import torch_geometric

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "lightgbm": lightgbm.__version__,
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_dir(
    out: Path, meta: dict[str, Any], texts: dict[str, str], blobs: dict[str, Any]
) -> None:
    """Write ``meta`` as meta.json, ``texts`` as text files, ``blobs`` (torch state_dicts) with
    torch.save, then the manifest."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    (out / META).write_text(
        json.dumps(
            {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}, indent=1, sort_keys=True
        )
    )
    for name, text in texts.items():
        (out / name).write_text(text)
    for name, state in blobs.items():
        torch.save(state, out / name)
    files = [META, *texts, *blobs]
    manifest = {"files": {name: _sha256(out / name) for name in sorted(files)}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _check_name(path: Path, name: object) -> None:
    """Refuse a manifest entry that is not a plain file name (no folder part, not absolute,
    not ``.``/``..``): the manifest must not reach outside the predictor's folder. Checked on
    the name alone, so the message says nothing about files outside."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise PredictorError(
            f"predictor {path}: {MANIFEST} lists {str(name)[:80]!r}, not a plain file name "
            "inside the predictor folder; refused (a tampered or foreign manifest)"
        )


def read_dir(path: Path) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """Verify the manifest and return (meta, text files, torch state_dicts)."""
    import torch

    if not path.is_dir():
        raise PredictorError(
            f"predictor directory {path} does not exist; train one with `nasctl train-predictor`"
        )
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files: dict[str, str] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PredictorError(
            f"{path} is not a predictor directory: {MANIFEST} is missing or "
            f"unreadable ({type(e).__name__})"
        ) from None
    if not isinstance(files, dict):
        raise PredictorError(f"{path}: {MANIFEST} has no file list; retrain the predictor")
    for name in files:  # before any file is touched: names only
        _check_name(path, name)
    root = path.resolve()
    for name, digest in files.items():
        f = path / name
        if f.is_symlink() and f.resolve().parent != root:
            raise PredictorError(
                f"predictor {path}: {name} is a link outside the predictor folder; refused"
            )
        if not f.is_file():
            raise PredictorError(f"predictor {path} is incomplete: {name} is missing; retrain it")
        if _sha256(f) != digest:
            raise PredictorError(
                f"predictor {path}: {name} does not match its SHA-256 in "
                f"{MANIFEST} (modified or corrupt); retrain it"
            )
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError) as e:
        raise PredictorError(f"predictor {path}: {META} is unreadable: {e}") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise PredictorError(
            f"predictor {path} has format {meta.get('format')!r} version "
            f"{meta.get('format_version')!r}; this nasctl reads {FORMAT} "
            f"version {FORMAT_VERSION}"
        )
    texts, blobs = {}, {}
    for name in files:
        if name.endswith(".txt") or (name.endswith(".json") and name != META):
            texts[name] = (path / name).read_text()
        elif name.endswith(".pt"):
            try:
                blobs[name] = torch.load(path / name, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad artifact
                raise PredictorError(f"predictor {path}: cannot load {name}: {e}") from None
    return meta, texts, blobs
