"""The one measure-and-store path: ``nasctl profile``, the search loop and the fleet all use it.

Two steps, usable apart (the fleet measures on a remote worker and hands the returned record to the
second):

* :func:`measure` asks a device for one :class:`~nasctl.records.MeasurementRequest`. A model's own
  failure (any :class:`~nasctl.errors.NasctlError` but a :class:`~nasctl.errors.DeviceError`) is a
  measurement with ``status="failed"``; a ``DeviceError`` (the device is gone or unusable)
  propagates.
* :func:`store_result` checks that a record answers its request (same architecture hash, and the
  expected device id when known) and stores it. A store that stays locked does not lose it: the
  write is retried with exponential backoff, then the record goes to the store's sidecar journal
  (:mod:`nasctl.datasets.journal`), which the next writable open of the store replays; the
  :class:`Outcome` says so.

:func:`measure_and_store` is both in a row. The architecture must already be in the store
(:meth:`~nasctl.datasets.store.Store.add_architecture`) before its measurement is stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nasctl.datasets import journal
from nasctl.datasets.store import Store
from nasctl.errors import DeviceError, NasctlError, StoreLockedError
from nasctl.records import Measurement, MeasurementRequest

#: Retries of a locked store write after the store's own busy timeout, and the first pause (s).
RETRIES = 3
BACKOFF_S = 0.5


class MeasuringDevice(Protocol):
    """What the measure path needs of a device (a :class:`nasctl.profiler.devices.Device`)."""

    @property
    def device_id(self) -> str: ...

    def measure(self, request: MeasurementRequest) -> Measurement: ...


@dataclass
class Outcome:
    """What happened to one measurement.

    ``stored``: a new row (False when an ok/noisy record of the same key was already stored and
    this one was ignored, or when it went to the journal). ``journal``: the journal file that
    holds it when the store stayed locked (replayed on the store's next writable open).
    """

    measurement: Measurement
    stored: bool
    journal: Path | None = None


def measure(device: MeasuringDevice, request: MeasurementRequest) -> Measurement:
    """Ask ``device`` for one measurement; a model's failure becomes a failed record, a
    :class:`DeviceError` (or an answer for another architecture or device) raises."""
    try:
        m = device.measure(request)
    except DeviceError:
        raise
    except NasctlError as e:  # the model failed, not the device: record it and go on
        m = Measurement(
            request.arch_hash,
            device.device_id,
            request.precision,
            request.batch,
            "failed",
            error=str(e),
        )
    check_answer(request, m, device.device_id)
    return m


def check_answer(request: MeasurementRequest, m: Measurement, device_id: str | None) -> None:
    """Raise :class:`DeviceError` unless ``m`` is for the requested architecture (and for
    ``device_id``, when given): a device that answers another question is a bug in it."""
    if m.arch_hash != request.arch_hash or (device_id is not None and m.device_id != device_id):
        raise DeviceError(
            f"device {request.device!r} answered for {m.arch_hash[:12]} on "
            f"{m.device_id}; asked {request.arch_hash[:12]} on {device_id or 'any device'} "
            "(a bug in the device; nothing stored)"
        )


def store_result(
    store: Store,
    request: MeasurementRequest,
    m: Measurement,
    *,
    device_id: str | None = None,
    retries: int | None = None,
    backoff_s: float | None = None,
) -> Outcome:
    """Check ``m`` against its request and store it (see the module doc): retried while the
    store is locked (``retries`` times, default :data:`RETRIES`, the first pause
    ``backoff_s``, doubling), then kept in the journal. Other store errors propagate."""
    check_answer(request, m, device_id)
    retries = RETRIES if retries is None else retries
    delay = BACKOFF_S if backoff_s is None else backoff_s
    for attempt in range(retries + 1):
        try:
            return Outcome(m, store.add_measurement(m) is not None)
        except StoreLockedError:
            if attempt == retries:
                break
            time.sleep(delay)
            delay *= 2
    return Outcome(m, False, journal.append(store.path, m))


def measure_and_store(
    store: Store,
    device: MeasuringDevice,
    request: MeasurementRequest,
    *,
    retries: int | None = None,
    backoff_s: float | None = None,
) -> Outcome:
    """:func:`measure` then :func:`store_result`; the one path every caller takes."""
    m = measure(device, request)
    return store_result(
        store, request, m, device_id=device.device_id, retries=retries, backoff_s=backoff_s
    )
