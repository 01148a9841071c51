"""Issue 14 target: "measured peak memory of 10 well-known classifiers written in torch within
10 % of an independent measurement made by a separate script in a fresh process".

    PYTHONPATH=$PWD:$PWD/agent nice -n 19 .venv/bin/python bench/bench_memory_zoo.py \
        --out /tmp/memzoo [--only resnet18,vgg16] [--repeats 3] [--json FILE]

1. Each classifier of ``bench/zoo.py`` is exported (224x224, batch 1) to ``OUT/onnx/``.
2. The cpu device measures all of them the way a user does: one ``nasctl profile --device cpu
   --db OUT/zoo.db OUT/onnx/*.onnx`` process (the CLI's defaults: per-layer times on), and the
   bench reads each row's ``memory.model_peak_bytes`` from the store.
3. Independently, ``bench/peak_rss_fresh.py`` (ONNX Runtime only, no nasctl code) runs each
   model in a fresh process, twice (with and without the session); each reports its own peak
   RSS (``VmHWM``, never reset) and the difference is the model's peak. Repeated
   ``--repeats`` times, median. The same again with ONNX Runtime's CPU arena off, to show what
   the arena adds.

Memory does not depend on the load: run it under ``nice``. Prints a markdown table (MB = 1e6
bytes) and, with ``--json``, every number.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOLERANCE = 0.10


def child_peak_bytes(args: list[str]) -> int:
    """Peak RSS (bytes) a fresh ``python args...`` process reports for itself at its end."""
    out = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1])


def independent_mb(model: Path, repeats: int, arena: bool = True) -> list[float]:
    """The model's peak (MB) by the fresh-process script, ``repeats`` times."""
    script = str(HERE / "peak_rss_fresh.py")
    extra = [] if arena else ["--no-arena"]
    out = []
    for _ in range(repeats):
        base = child_peak_bytes([script, str(model), "--baseline", *extra])
        full = child_peak_bytes([script, str(model), *extra])
        out.append((full - base) / 1e6)
    return out


def device_mb(models: list[Path], db: Path) -> dict[str, dict]:
    """``nasctl profile --device cpu`` over every model in one process; the stored memory."""
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "nasctl.cli.main", "profile", "--device", "cpu", "--db", str(db)]
    subprocess.run(cmd + [str(m) for m in models], check=True, env=env, stdout=subprocess.DEVNULL)
    return read_store(db)


def read_store(db: Path) -> dict[str, dict]:
    """Model name -> status and stored ``memory`` of each measurement in ``db``."""
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT a.model, m.status, json_extract(m.extra_json, '$.memory') FROM measurements m "
        "JOIN architectures a ON a.hash = m.arch_hash ORDER BY m.id"
    ).fetchall()
    con.close()
    out = {}
    for model, status, mem in rows:
        out[Path(str(model)).stem] = {"status": status, "memory": json.loads(mem or "{}")}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", default="", help="comma-separated zoo names (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--keep-db", action="store_true", help="reuse OUT/zoo.db's device measurements if present"
    )
    ap.add_argument(
        "--independent-from",
        type=Path,
        help="take the independent measurements from an earlier run's --json (same script)",
    )
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import zoo  # type: ignore[import-not-found]

    names = [n for n in args.only.split(",") if n] or list(zoo.MODELS)
    onnx_dir = args.out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in names:
        p = onnx_dir / f"{n}.onnx"
        if not p.is_file():
            zoo.export(n, p)
        paths.append(p)
    db = args.out / "zoo.db"
    if db.exists() and not args.keep_db:
        db.unlink()
    dev = device_mb(paths, db) if not db.exists() else read_store(db)
    earlier = {}
    if args.independent_from:
        earlier = {r["model"]: r for r in json.loads(args.independent_from.read_text())}
    rows = []
    for n, p in zip(names, paths, strict=True):
        mem = dev.get(n, {}).get("memory", {})
        d = mem.get("model_peak_bytes")
        if n in earlier:
            ind, ind_na = earlier[n]["independent_runs_mb"], [earlier[n]["independent_no_arena_mb"]]
        else:
            ind = independent_mb(p, args.repeats)
            ind_na = independent_mb(p, 1, arena=False)
        row = {
            "model": n,
            "onnx_mb": p.stat().st_size / 1e6,
            "device_mb": None if d is None else d / 1e6,
            "independent_mb": statistics.median(ind),
            "independent_runs_mb": ind,
            "independent_no_arena_mb": ind_na[0],
            "device_memory": mem,
        }
        if row["device_mb"] is not None:
            row["ratio"] = row["device_mb"] / row["independent_mb"]
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("model", "device_mb", "independent_mb")}),
              file=sys.stderr, flush=True)  # fmt: skip
    print("| model | ONNX file MB | cpu device MB | independent MB (runs) | ratio | within 10 % "
          "| independent, arena off MB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        ratio = r.get("ratio")
        ok = "yes" if ratio is not None and abs(ratio - 1) <= TOLERANCE else "no"
        runs = ", ".join(f"{v:.1f}" for v in r["independent_runs_mb"])
        dmb = "missing" if r["device_mb"] is None else f"{r['device_mb']:.1f}"
        rt = "-" if ratio is None else f"{ratio:.3f}"
        print(f"| {r['model']} | {r['onnx_mb']:.1f} | {dmb} | {r['independent_mb']:.1f} ({runs}) "
              f"| {rt} | {ok} | {r['independent_no_arena_mb']:.1f} |")  # fmt: skip
    within = sum(1 for r in rows if r.get("ratio") and abs(r["ratio"] - 1) <= TOLERANCE)
    print(f"\n{within} of {len(rows)} within {TOLERANCE:.0%}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
