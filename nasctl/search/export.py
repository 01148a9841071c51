"""Export a search's winner (issue #15.4): from a run folder (``nasctl search --out DIR``) and a
frontier rank or a genotype, write a folder holding

- ``model.onnx`` at the chosen precision (FP32, FP16, Q/DQ INT8: :mod:`nasctl.arch.precision`),
- ``graph.json`` (the architecture's config), ``weights.safetensors`` (initial weights, keyed like
  the ONNX initializers) and ``model.py`` (``build()`` -> a trainable ``torch.nn.Module`` with
  those weights; it computes what the FP32 ONNX computes),
- ``trtexec.sh``: the TensorRT build command for the target's TensorRT version,
- ``card.json`` and ``README.md``: accuracy, latency (measured, else predicted), memory, the
  device and its fingerprint, the command that found it.

Everything is written into a temporary folder next to ``--out`` and renamed at the end: an
interrupted or failed export leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasctl.errors import NasctlError
from nasctl.search.precisions import measure_precision

#: TensorRT version of the build command when the device names none (the cpu device)
DEFAULT_TRT = "10.13"


@dataclass
class Chosen:
    """The exported architecture: its genotype, frontier rank (None when given by genotype and
    not on the frontier) and frontier row."""

    genotype: str
    rank: int | None
    row: dict[str, Any] | None


def read_run(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's summary and frontier rows, most accurate first (rank 1)."""
    f = run / "frontier.json"
    if not f.is_file():
        raise NasctlError(
            f"{run} holds no frontier.json; give the output folder of a finished nasctl search"
        )
    try:
        doc = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise NasctlError(f"cannot read {f}: {e}") from None
    rows = sorted(doc.get("frontier", []), key=lambda r: -(r.get("accuracy") or 0.0))
    return doc, rows


def choose(rows: list[dict[str, Any]], rank: int | None, genotype: str | None) -> Chosen:
    """Rank ``rank`` (1-based, most accurate first) of the frontier, or ``genotype``."""
    if genotype is not None and rank is not None:
        raise NasctlError("rank must not be given with genotype: give one of them")
    if genotype is not None:
        for i, r in enumerate(rows, 1):
            if r.get("genotype") == genotype:
                return Chosen(genotype, i, r)
        return Chosen(genotype, None, None)
    k = 1 if rank is None else rank
    if not rows:
        raise NasctlError("the run's frontier is empty: nothing to export")
    if not 1 <= k <= len(rows):
        raise NasctlError(
            f"rank must be between 1 and {len(rows)}: the run's frontier has {len(rows)} points"
        )
    return Chosen(str(rows[k - 1]["genotype"]), k, rows[k - 1])


def _stored(run: Path, genotype: str, space: str, precision: str) -> dict[str, Any] | None:
    """The run's device measurement of ``genotype`` at ``precision`` (device id, median,
    fingerprint, memory)."""
    db = run / "measurements.db"
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = con.execute(
                "SELECT m.device_id, m.precision, m.median_ms, m.fingerprint_json, m.extra_json "
                "FROM measurements m JOIN genotypes g ON g.arch_hash = m.arch_hash "
                "WHERE g.space = ? AND g.genotype = ? AND m.status != 'failed' "
                "AND m.precision = ? ORDER BY m.id DESC LIMIT 1",
                (space, genotype, precision),
            ).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    extra = json.loads(row[4] or "{}")
    return {
        "device_id": row[0],
        "precision": row[1],
        "median_ms": row[2],
        "fingerprint": json.loads(row[3] or "{}"),
        "memory": extra.get("memory"),
    }


def search_command(settings: dict[str, Any], run: Path) -> str:
    """The ``nasctl search`` command line, rebuilt from the run's recorded settings."""
    parts = ["nasctl search"]
    for key in ("space", "device", "accuracy", "seed", "strategy", "population"):
        if settings.get(key) is not None:
            parts.append(f"--{key} {settings[key]}")
    if settings.get("predictor_dir"):
        parts.append(f"--predictor {settings['predictor_dir']}")
    if settings.get("use_predictor") is False:
        parts.append("--no-predictor")
    if settings.get("precision") not in (None, "fp32"):
        parts.append(f"--precision {settings['precision']}")
    cons = settings.get("constraints") or {}
    for key, flag in (
        ("latency_budget_ms", "--latency-budget"),
        ("min_accuracy", "--min-accuracy"),
        ("max_params", "--max-params"),
        ("max_memory_mb", "--max-memory-mb"),
    ):
        if cons.get(key) is not None:
            parts.append(f"{flag} {cons[key]}")
    parts.append(f"--out {run}")
    return " ".join(parts)


def trtexec_build(trt_version: str, precision: str) -> list[str]:
    """trtexec arguments that build ``model.onnx`` (precision written into it) into
    ``model.plan`` on TensorRT ``trt_version`` (flags as the agent uses them)."""
    from nasctl_agent.backends import trt_common as tc
    from nasctl_agent.backends.trtexec import precision_flags
    from nasctl_agent.errors import AgentError

    try:
        ver = tc.parse_version(trt_version)
        plan = tc.precision_plan(ver, precision, precision)
        flags = precision_flags(ver, plan)
    except AgentError as e:
        raise NasctlError(f"TensorRT {trt_version} cannot build this model: {e}") from None
    return ["trtexec", "--onnx=model.onnx", *flags, "--saveEngine=model.plan"]


MODEL_PY = '''"""{name}: a trainable torch.nn.Module of the architecture nasctl exported.

    from model import build
    net = build()            # initial weights from weights.safetensors (the ones in model.onnx)
    net = build(weights=False)  # fresh initialization

Needs nasctl (the architecture runs through nasctl.arch.torch_module.GraphModule).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SPACE = {space!r}
GENOTYPE = {genotype!r}


def build(weights: bool = True):
    from safetensors.numpy import load_file

    from nasctl.arch.graph import Graph
    from nasctl.arch.torch_module import to_torch

    net = to_torch(Graph.from_json((HERE / "graph.json").read_text()))
    if weights:
        net.load_params(load_file(str(HERE / "weights.safetensors")))
    return net
'''


def export_winner(
    run: Path,
    out: Path,
    *,
    rank: int | None = None,
    genotype: str | None = None,
    precision: str | None = None,
    calib_data: Path | None = None,
    trt_version: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the export folder ``out`` (which must not exist); returns the card. ``precision``
    None: the chosen point's own (a search over precisions records it per frontier row), else
    FP32."""
    import torch
    from safetensors.numpy import save_file

    from nasctl.arch.costs import graph_costs
    from nasctl.arch.onnx_io import to_onnx
    from nasctl.arch.precision import with_precision
    from nasctl.arch.torch_module import to_torch
    from nasctl.spaces import get_space

    if out.exists():
        raise NasctlError(f"out={out} exists; give a new folder (nothing was written)")
    doc, rows = read_run(run)
    settings = doc.get("settings") or {}
    chosen = choose(rows, rank, genotype)
    label = precision or str((chosen.row or {}).get("precision") or "fp32")
    precision = measure_precision(label)  # dla: the INT8 model, built for the DLA
    space = get_space(str(settings.get("space")))
    geno = space.validate(chosen.genotype)
    graph = space.to_graph(geno)
    trt = trt_version or _trt_of(str(settings.get("device", ""))) or DEFAULT_TRT
    trtexec = trtexec_build(trt, precision)
    if label == "dla":
        trtexec[-1:-1] = ["--useDLACore=0", "--allowGPUFallback"]
    torch.manual_seed(seed)
    net = to_torch(graph)
    params = net.export_params()
    fp32 = to_onnx(graph, params=params)
    # INT8 activations: ORT's fast uint8 form for a cpu run, TensorRT's symmetric int8 else;
    # a cpu run's INT8 export also gets the symmetric model the TensorRT command builds
    acts = "uint8" if settings.get("device") == "cpu" else "int8"
    model, calib = with_precision(fp32, precision, calib_data, seed, acts)
    trt_model = None
    if precision == "int8" and acts != "int8":
        trt_model = with_precision(fp32, precision, calib_data, seed, "int8")[0]
        trtexec = [a.replace("model.onnx", "model_tensorrt.onnx") for a in trtexec]
    stored = _stored(run, geno, str(settings.get("space")), precision)
    costs = graph_costs(graph).total
    row = chosen.row or {}
    card = {
        "space": settings.get("space"),
        "genotype": geno,
        "rank": chosen.rank,
        "precision": label,
        "accuracy": row.get("accuracy"),
        "accuracy_estimator": settings.get("accuracy"),
        "latency_ms": {
            "measured": row.get("measured_ms"),
            "predicted": row.get("predicted_ms"),
            "interval": [row.get("low_ms"), row.get("high_ms")],
            "precision_measured": stored["precision"] if stored else None,
        },
        "memory_mb": row.get("memory_mb"),
        "memory_interval_mb": [row.get("memory_low_mb"), row.get("memory_high_mb")],
        "measured_memory_mb": row.get("measured_memory_mb"),
        "params": row.get("params") or costs.get("params"),
        "macs": costs.get("macs"),
        "device": settings.get("device"),
        "device_id": stored["device_id"] if stored else None,
        "device_memory": stored["memory"] if stored else None,
        "fingerprint": stored["fingerprint"] if stored else None,
        "calibration": calib.to_dict() if calib else None,
        "found_by": search_command(settings, run),
        "found_by_note": "rebuilt from the run's summary settings (generations, budgets omitted)",
        "tensorrt": {"version": trt, "build": " ".join(trtexec)},
        "files": (["model_tensorrt.onnx"] if trt_model is not None else [])
        + [
            "model.onnx",
            "graph.json",
            "weights.safetensors",
            "model.py",
            "trtexec.sh",
            "card.json",
            "README.md",
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        import onnx

        onnx.save_model(model, str(tmp / "model.onnx"))
        if trt_model is not None:
            onnx.save_model(trt_model, str(tmp / "model_tensorrt.onnx"))
        (tmp / "graph.json").write_text(graph.to_json())
        save_file(params, str(tmp / "weights.safetensors"))
        (tmp / "model.py").write_text(
            MODEL_PY.format(name=out.name, space=settings.get("space"), genotype=geno)
        )
        (tmp / "trtexec.sh").write_text(
            f"#!/bin/sh\n# TensorRT {trt}: builds model.plan from model.onnx ({precision})\n"
            + " ".join(trtexec)
            + ' "$@"\n'
        )
        (tmp / "card.json").write_text(json.dumps(card, indent=2, default=str))
        (tmp / "README.md").write_text(readme(card))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def _trt_of(device: str) -> str | None:
    import re

    m = re.search(r"trt(\d+\.\d+)", device)
    return m.group(1) if m else None


def readme(card: dict[str, Any]) -> str:
    lat = card["latency_ms"]
    lines = [
        f"# {card['space']} `{card['genotype']}` ({card['precision']})",
        "",
        f"- accuracy: {card['accuracy']} ({card['accuracy_estimator']})",
        f"- latency: measured {lat['measured']} ms, predicted {lat['predicted']} ms "
        f"on {card['device']} ({card['device_id'] or 'no stored measurement'})",
        f"- memory: predicted {card['memory_mb']} MiB (the search's memory model, else the "
        f"analytic bound), measured {card.get('measured_memory_mb')} MiB; the device's "
        f"record: {card['device_memory']}",
        f"- params: {card['params']}, MACs: {card['macs']}",
        f"- found by: `{card['found_by']}` ({card['found_by_note']})",
        "",
        "## Files",
        "- `model.onnx`: the model at its precision; `model.py`: `build()` -> torch module "
        "(weights from `weights.safetensors`, same outputs as the FP32 ONNX)",
        f"- `trtexec.sh`: TensorRT {card['tensorrt']['version']} engine build: "
        f"`{card['tensorrt']['build']}`",
    ]
    if card.get("calibration"):
        lines.append(f"- INT8 calibration: {json.dumps(card['calibration'])}")
    if card.get("fingerprint"):
        lines += [
            "",
            "## Device fingerprint",
            "```",
            json.dumps(card["fingerprint"], indent=2),
            "```",
        ]
    return "\n".join(lines) + "\n"
