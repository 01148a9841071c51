"""What a user runs by default: the CLI's search defaults are the library's (one source), and a
replay device answers every genotype from its own row, never from an isomorphic cell's record."""

from __future__ import annotations

import inspect
import random
from pathlib import Path

import pytest

from nasctl.arch.hashing import graph_hash
from nasctl.profiler import get_device
from nasctl.records import MeasurementRequest
from nasctl.search.config import config_defaults
from nasctl.search.loop import SearchConfig, run_search
from nasctl.search.objectives import Constraints
from nasctl.spaces import get_space
from nasctl.spaces.nb201 import NB201Space

# two isomorphic NB201 cells (same graph, same content hash) whose titan_rtx_1 rows differ by 33 %
A = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
B = "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"
COLUMN = "titan_rtx_1"


@pytest.fixture(autouse=True)
def _data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NASCTL_DATA_DIR", str(shared_data))


class OnlyB(NB201Space):
    """NB201 whose sampler proposes only ``B`` (so the search's one measurement is ``B``)."""

    def sample(self, rng: random.Random) -> str:
        return B


class HashReusingReplay:
    """The replay device as a device that *does* reuse by content hash (a real device's rule)."""

    reuses_by_hash = True

    def __init__(self) -> None:
        self.inner = get_device(f"replay:nb201/{COLUMN}")
        self.device_id = self.inner.device_id
        self.asked: list[str] = []

    def measure(self, request: MeasurementRequest):  # noqa: ANN201 - Device.measure signature
        self.asked.append(request.genotype or "")
        return self.inner.measure(request)


def _table_ms(shared_data: Path, genotype: str) -> float:
    import csv

    with (shared_data / "nb201" / "latency_ms.csv").open(newline="") as f:
        return next(float(r[COLUMN]) for r in csv.DictReader(f) if r["arch"] == genotype)


def _store_with_a(db: Path) -> None:
    """A store holding the replay device's measurement of ``A`` (as `nasctl profile` leaves)."""
    from nasctl.datasets.store import Store

    space = get_space("nb201")
    dev = get_device(f"replay:nb201/{COLUMN}")
    with Store(db) as s:
        h = s.add_architecture(space.to_graph(A))
        req = MeasurementRequest(arch_hash=h, device=dev.name, space="nb201", genotype=A)
        s.add_measurement(dev.measure(req))


def _search_b(out: Path, db: Path, device=None):  # noqa: ANN001, ANN202
    cfg = SearchConfig(
        space="nb201",
        device=f"replay:nb201/{COLUMN}",
        accuracy="nb201:cifar10",
        out=out,
        constraints=Constraints(latency_budget_ms=100.0),
        device_budget=1,
        generations=1,
        population=2,  # both proposals are B
        strategy="random",
        use_predictor=False,
        db=db,
    )
    return run_search(cfg, space=OnlyB(), device=device)


def test_replay_device_never_answers_with_an_isomorphic_cells_row(
    tmp_path: Path, shared_data: Path
) -> None:
    space = get_space("nb201")
    assert graph_hash(space.to_graph(A)) == graph_hash(space.to_graph(B))
    a_ms, b_ms = _table_ms(shared_data, A), _table_ms(shared_data, B)
    assert abs(a_ms - b_ms) > 0.3 * a_ms  # the table tells them apart
    assert get_device(f"replay:nb201/{COLUMN}").reuses_by_hash is False

    db = tmp_path / "m.db"
    _store_with_a(db)
    res = _search_b(tmp_path / "replay", db)
    assert SearchConfig.reuse_stored is True  # the default asks for reuse ...
    [b] = [c for c in res.candidates if c.genotype == B]
    assert b.measured_ms == pytest.approx(b_ms)  # ... and B is still answered from B's row
    assert res.device_measurements == 1
    assert [m["from_store"] for m in res.measurements] == [0]


def test_a_device_that_reuses_by_hash_answers_from_the_store(
    tmp_path: Path, shared_data: Path
) -> None:
    assert get_device("cpu").reuses_by_hash is True  # real devices: same network, same record
    db = tmp_path / "m.db"
    _store_with_a(db)
    dev = HashReusingReplay()
    res = _search_b(tmp_path / "real", db, device=dev)
    [b] = [c for c in res.candidates if c.genotype == B]
    # the same network is the same measurement: A's record answers, the device is not asked
    assert dev.asked == [] and res.device_measurements == 0
    assert b.measured_ms == pytest.approx(_table_ms(shared_data, A))
    assert [m["from_store"] for m in res.measurements] == [1]


def test_cli_search_defaults_are_the_library_defaults() -> None:
    from nasctl.cli import search_cmd

    params = inspect.signature(search_cmd.search).parameters
    lib = config_defaults()
    shared = [n for n in params if n in lib]
    assert {"population", "generations", "validate_every", "use_predictor", "reuse_stored"} <= set(
        shared
    )
    for name in shared:
        assert params[name].default == lib[name], name
    assert params["confidence"].default == Constraints().confidence
