"""Bad input to the fleet, against a real ``redis-server`` and real workers: one-line errors,
nothing stored from a malformed answer, and the run resumable."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fleet_harness import LEASE_S, Fleet, RedisServer, env, free_port, run_cli
from nasctl_agent import fleet_protocol

from nasctl.datasets.store import Store

pytestmark = pytest.mark.slow
DEVICE = "replay:nb201/titanxp_1"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    f.worker(DEVICE, "--data-dir", str(shared_data))
    yield f
    f.close()


def _one_line_error(res: object, *needles: str) -> str:
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _profile(url: str, db: Path, *extra: object, device: str = DEVICE) -> list[object]:
    args = ["profile", "--device", device, "--space", "nb201", "--num", "2", "--db", db]
    return [*args, "--fleet", url, "--fleet-wait", "1", *extra]


def test_a_key_nobody_serves_stops_after_a_bounded_wait(fleet: Fleet, tmp_path: Path) -> None:
    t0 = time.monotonic()
    res = run_cli(*_profile(fleet.url, tmp_path / "a.db", device="replay:nb201/pixel3"))
    line = _one_line_error(
        res, "no worker serves device 'replay:nb201/pixel3'", "nasctl-agent worker"
    )
    assert "--device replay:nb201/pixel3" in line and time.monotonic() - t0 < 15


def test_wrong_password_and_unreachable_broker(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="s3cret")
    try:
        bad = server.url.replace("s3cret", "nope")
        res = run_cli(*_profile(bad, tmp_path / "a.db"))
        line = _one_line_error(res, "refused the password")
        assert "nope" not in line  # never printed
        nopass = server.url.replace(":s3cret@", "")
        _one_line_error(run_cli(*_profile(nopass, tmp_path / "a.db")), "needs a password")
        res = run_cli("fleet", "status", "--fleet", server.url, "--json")
        assert res.returncode == 0 and json.loads(res.stdout)["workers"] == []
    finally:
        server.stop()
    url = f"redis://127.0.0.1:{free_port()}/0"
    _one_line_error(run_cli(*_profile(url, tmp_path / "a.db")), "cannot reach the broker")
    _one_line_error(run_cli("fleet", "status", "--fleet", url), "cannot reach the broker")
    _one_line_error(run_cli(*_profile("http://x", tmp_path / "a.db")), "--fleet must be redis://")
    assert not (tmp_path / "a.db").exists()  # nothing created for a run that could not start


def test_a_worker_of_another_protocol_is_refused(
    fleet: Fleet, tmp_path: Path, shared_data: Path
) -> None:
    device = "replay:nb201/titanx_256"
    code = (
        "import sys, nasctl_agent.fleet_protocol as p; p.PROTOCOL_VERSION = 99; "
        "from nasctl_agent.cli import main; sys.exit(main())"
    )
    cmd = [sys.executable, "-c", code, "worker", "--broker", fleet.url, "--device", device]
    cmd += ["--data-dir", str(shared_data), "--name", "old", "--lease-s", str(LEASE_S)]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "old" not in fleet.announcements() and time.monotonic() < deadline:
            time.sleep(0.05)
        res = run_cli(*_profile(fleet.url, tmp_path / "a.db", device=device))
        ours = f"this nasctl speaks {fleet_protocol.PROTOCOL_VERSION}"
        _one_line_error(res, "worker old speaks fleet protocol 99", ours)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_malformed_answer_is_refused_and_nothing_is_stored(fleet: Fleet, tmp_path: Path) -> None:
    from nasctl.datasets.collect import Job, request_for, sample_architectures
    from nasctl.datasets.store import graph_hash
    from nasctl.fleet import Fleet as HostFleet
    from nasctl.fleet.jobs import task_id
    from nasctl.spaces import get_space

    genotype, graph = next(sample_architectures(get_space("nb201"), 2, 0))
    named = SimpleNamespace(name=DEVICE)
    req = request_for(named, Job(graph_hash(graph), graph, genotype), "fp32", 1, True, {})
    tid = task_id(req, "replay-nb201-titanxp_1")
    host = HostFleet(fleet.url)
    result = {"protocol": 1, "status": "ok", "device": DEVICE, "backend": "replay"}
    result.update(device_id="replay-nb201-titanxp_1", precision="fp32", batch=1)
    stats = dict.fromkeys(("mean_ms", "p90_ms", "std_ms", "cv"), 1.0)
    result["timing"] = {"median_ms": -3.0, **stats, "runs": 5, "status": "ok", "attempts": 1}
    bad = {"protocol": fleet_protocol.PROTOCOL_VERSION, "result": result, "worker": {}}
    host.app.backend.store_result(tid, bad, "SUCCESS")
    host.redis.set("nasctl:sent:" + tid, "1")
    db = tmp_path / "a.db"
    res = run_cli(*_profile(fleet.url, db))
    _one_line_error(res, "malformed answer", "nothing of it is stored")
    with Store(db, readonly=True) as s:
        assert s.device_ids() == []  # nothing stored from it
    res = run_cli(*_profile(fleet.url, db, "--json"))  # the rerun measures it for real
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["measured"] == 2
    host.close()


def test_search_through_the_fleet(fleet: Fleet, tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "s"
    res = run_cli(
        "search", "--device", DEVICE, "--space", "nb201", "--accuracy", "nb201:cifar10",
        "--latency-budget", "12", "--device-budget", "6", "--generations", "2",
        "--population", "8", "--out", out, "--fleet", fleet.url, "--fleet-wait", "5", "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["device_measurements"] == 6
    lines = (out / "measurements.jsonl").read_text().splitlines()
    fleet_rows = [json.loads(x)["measurement"] for x in lines if '"measurement"' in x]
    assert fleet_rows and all(m["extra"]["fleet"]["worker"] == "w0" for m in fleet_rows)


def test_workers_whose_fingerprints_disagree_are_not_mixed(
    fleet: Fleet, tmp_path: Path, shared_data: Path
) -> None:
    device = "replay:nb201/gold_6226"
    other = tmp_path / "data"
    other.mkdir()
    (other / "nb201").symlink_to(shared_data / "nb201")  # same table, another setup's path
    a = fleet.worker(device, "--data-dir", str(shared_data), name="fp-a", wait=False)
    b = fleet.worker(device, "--data-dir", str(other), name="fp-b")
    fleet.wait_announced(a)
    res = run_cli(*_profile(fleet.url, tmp_path / "a.db", device=device))
    line = _one_line_error(res, "fp-a", "fp-b", "fingerprints differ", "replay-nb201-gold_6226")
    assert "replay" in line  # the field that differs is named
    b.stop()
    deadline = time.monotonic() + 10
    while "fp-b" in fleet.announcements() and time.monotonic() < deadline:
        time.sleep(0.05)
    res = run_cli(*_profile(fleet.url, tmp_path / "a.db", device=device))
    assert res.returncode == 0, res.stderr
    a.stop()


def test_a_tls_broker_with_a_password(tmp_path: Path, shared_data: Path) -> None:
    f = Fleet(tmp_path, password="s3cret", tls=True)
    try:
        assert f.url.startswith("rediss://:s3cret@127.0.0.1:")
        f.worker(DEVICE, "--data-dir", str(shared_data))
        res = run_cli(*_profile(f.url, tmp_path / "a.db", "--json"))
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["measured"] == 2
        # the server's certificate is checked: without the CA the connection is refused
        no_ca = f.url.split("?")[0]
        line = _one_line_error(run_cli(*_profile(no_ca, tmp_path / "b.db")), "cannot reach")
        assert "certificate verify failed" in line and "s3cret" not in line
    finally:
        f.close()
