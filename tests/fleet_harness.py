"""A real fleet for tests: ``redis-server`` on a free loopback port and real
``nasctl-agent worker`` processes, started and stopped by the tests (no fake Redis)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Worker lease in tests: a killed worker's job is sent again after about this long.
LEASE_S = 1.0


def make_certs(folder: Path) -> Path:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl); returns the CA file."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = folder / "tls"
    d.mkdir(parents=True, exist_ok=True)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run = [
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 "
        "-subj /CN=nasctl-test-ca",
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
        "-subj /CN=127.0.0.1",
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
        "-out server.crt -days 2 -extfile san.ext",
    ]
    for cmd in run:
        subprocess.run(cmd.split(), cwd=d, check=True, capture_output=True)
    return d / "ca.crt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO), str(REPO / "agent"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


class RedisServer:
    """``redis-server`` on 127.0.0.1 with an append-only file (so a restart keeps the queues)."""

    def __init__(
        self,
        workdir: Path,
        password: str | None = None,
        tls: bool = False,
        appendfsync: str = "always",
    ) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed (make setup installs it)")
        self.exe, self.dir, self.password = exe, workdir, password
        self.appendfsync = appendfsync
        self.port = free_port()
        self.ca = make_certs(workdir) if tls else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.ca is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.ca is not None:
            d = self.ca.parent
            args[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", str(d / "server.crt"), "--tls-key-file"]
            args += [str(d / "server.key"), "--tls-ca-cert-file", str(self.ca)]
            args += ["--tls-auth-clients", "no"]
        args += ["--appendonly", "yes", "--appendfsync", self.appendfsync, "--dir", str(self.dir)]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


class Worker:
    """One ``nasctl-agent worker`` process (its own process group)."""

    def __init__(self, url: str, device: str, *args: str, name: str, logdir: Path) -> None:
        self.name = name
        self.log = logdir / f"{name}.log"
        cmd = [sys.executable, "-m", "nasctl_agent", "worker", "--broker", url]
        cmd += ["--device", device, "--name", name, "--lease-s", str(LEASE_S), *args]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (a device that dies)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Fleet:
    """A Redis server and the workers started on it; everything stopped by :meth:`close`."""

    def __init__(
        self, tmp: Path, password: str | None = None, tls: bool = False, **redis: Any
    ) -> None:
        (tmp / "redis").mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.redis = RedisServer(tmp / "redis", password, tls, **redis)
        self.workers: list[Worker] = []

    @property
    def url(self) -> str:
        return self.redis.url

    def worker(self, device: str, *args: str, wait: bool = True, **kw: Any) -> Worker:
        name = kw.get("name") or f"w{len(self.workers)}"
        w = Worker(kw.get("url", self.url), device, *args, name=name, logdir=self.tmp)
        self.workers.append(w)
        if wait:
            self.wait_announced(w)
        return w

    def announcements(self) -> dict[str, dict[str, Any]]:
        r = self.redis.client()
        try:
            keys = list(r.scan_iter(match="nasctl:worker:*"))
            return {json.loads(v)["name"]: json.loads(v) for v in r.mget(keys) if v} if keys else {}
        finally:
            r.close()

    def wait_announced(self, w: Worker, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while w.name not in self.announcements():
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker {w.name} exited: {w.output()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {w.name} did not announce: {w.output()[-2000:]}")
            time.sleep(0.05)
        # announced before the Celery consumer is up: wait until it listens on its queue
        time.sleep(0.3)

    def close(self) -> None:
        for w in self.workers:  # all at once: a warm shutdown takes a moment each
            if w.proc.poll() is None:
                os.killpg(w.proc.pid, signal.SIGTERM)
        for w in self.workers:
            w.stop()
        self.redis.stop()


def run_cli(*args: Any) -> subprocess.CompletedProcess[str]:
    """``nasctl ARGS`` in this process (typer's CliRunner): exit code, stdout, stderr."""
    from typer.testing import CliRunner

    from nasctl.cli.main import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


def in_background(fn: Any, *args: Any) -> threading.Thread:
    """``fn(*args)`` in a daemon thread (a fault injected while the host runs here)."""
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def start_cli(*args: Any) -> subprocess.Popen[str]:
    """``nasctl ARGS`` in a child process (so a test can kill it)."""
    cmd = [sys.executable, "-m", "nasctl.cli.main", *map(str, args)]
    return subprocess.Popen(
        cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
