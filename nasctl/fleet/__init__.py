"""The host side of the device fleet (Celery + Redis): send jobs to the queue of a device key,
gather the answers, store each once. It measures nothing itself: ``nasctl-agent worker`` does,
on the device (``agent/nasctl_agent/worker.py``); the wire contract both sides import is
``nasctl_agent.fleet_protocol``.

:class:`RemoteDevice` is the fleet seen as a device (the CLI hands it to the collector and to
the search loop); its ``measure_many`` keeps every worker busy during ``nasctl profile``
(through the one collection loop, :func:`nasctl.datasets.collect.collect`);
:func:`fleet_status` is ``nasctl fleet status``.
"""

from __future__ import annotations

from nasctl.fleet.connect import BrokerDown, Fleet, FleetError
from nasctl.fleet.registry import status as fleet_status
from nasctl.fleet.remote import RemoteDevice

__all__ = ["BrokerDown", "Fleet", "FleetError", "RemoteDevice", "fleet_status"]
