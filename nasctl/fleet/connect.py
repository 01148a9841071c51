"""Connecting the host to a fleet: the Redis URL, the Celery app, one-line errors.

``redis://[:PASSWORD@]HOST:PORT/DB`` or ``rediss://...`` (TLS; the server's certificate is
checked, ``?ssl_ca_certs=/path/ca.pem`` names the CA). The password never appears in messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from nasctl.errors import DeviceError

T = TypeVar("T")


class FleetError(DeviceError):
    """The fleet cannot serve the run (broker unreachable, no worker for a key, workers that
    disagree, a malformed answer). A DeviceError: the collection stops, what is stored stays."""


def protocol() -> Any:
    """The shared wire contract (``nasctl_agent.fleet_protocol``)."""
    try:
        from nasctl_agent import fleet_protocol
    except ImportError:
        raise FleetError(
            "the fleet needs the nasctl-agent package beside nasctl: pip install -e ./agent"
        ) from None
    return fleet_protocol


def mask(url: str) -> str:
    """``url`` with its password replaced by ``***`` (the wire contract's ``mask_url``)."""
    return protocol().mask_url(url)


def check_url(url: str) -> str:
    """``url`` if it is a Redis URL, else a one-line FleetError."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise FleetError(
            f"fleet must be redis://[:PASSWORD@]HOST:PORT/DB or rediss://...; got {mask(url)!r}"
        )
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise FleetError(f"fleet must be a URL with a valid port; got {mask(url)!r}") from None
    return url


class Fleet:
    """A connection to one fleet: ``redis`` (the client) and ``app`` (the Celery app)."""

    def __init__(self, url: str, connect_timeout_s: float = 5.0) -> None:
        import redis
        from celery import Celery

        self.url = check_url(url)
        self.proto = protocol()
        self.redis = redis.Redis.from_url(
            url, socket_connect_timeout=connect_timeout_s, socket_timeout=30.0
        )
        self.call(self.redis.ping)
        self.app = Celery("nasctl_host")
        self.app.conf.update(self.proto.celery_config(url))
        # the host waits for answers on its own subscription (RemoteDevice); Celery's per-task
        # one (for AsyncResult.get, never called here) would be a second, unread copy of each
        self.app.backend.on_task_call = lambda *args, **kwargs: None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)`` with Redis errors turned into one-line FleetErrors."""
        import redis
        from kombu.exceptions import OperationalError

        try:
            return fn(*args, **kwargs)
        except redis.AuthenticationError:
            if urlsplit(self.url).password is None:
                raise FleetError(
                    f"Redis at {mask(self.url)} needs a password: redis://:PASSWORD@HOST:PORT/DB"
                ) from None
            raise FleetError(
                f"Redis at {mask(self.url)} refused the password; give it as "
                "redis://:PASSWORD@HOST:PORT/DB"
            ) from None
        except redis.ResponseError as e:
            if "NOAUTH" in str(e) or "WRONGPASS" in str(e):
                raise FleetError(
                    f"Redis at {mask(self.url)} needs a password (redis://:PASSWORD@HOST:PORT/DB)"
                ) from None
            raise FleetError(f"Redis at {mask(self.url)}: {e}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError, OperationalError) as e:
            raise BrokerDown(
                f"cannot reach the broker at {mask(self.url)} ({_first_line(e)}); start it "
                "(redis-server --bind 127.0.0.1 --port 6379) or fix fleet=URL"
            ) from None

    def retrying(self, fn: Callable[..., T], *args: Any, wait_s: float, **kwargs: Any) -> T:
        """``fn(*args)``, retried while the broker is down for up to ``wait_s`` seconds."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self.call(fn, *args, **kwargs)
            except BrokerDown as e:
                if time.monotonic() >= deadline:
                    raise BrokerDown(
                        f"{e} -- waited {wait_s:g} s; rerun the same command to resume "
                        "(results already stored are kept, jobs in flight are picked up)"
                    ) from None
                time.sleep(0.5)

    def close(self) -> None:
        try:
            self.redis.close()
        except Exception:
            pass


class BrokerDown(FleetError):
    """Redis cannot be reached (down, restarting, wrong address)."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
