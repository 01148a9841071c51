"""Search spaces: a registry of genotype -> architecture-graph families."""

from __future__ import annotations

from nasctl.search.spaces.base import SearchSpace, get_space, list_spaces, register_space

# Built-in spaces register themselves on import (added as they land).
for _mod in ("mbconv", "resnet", "nb201", "fbnet"):
    try:
        __import__(f"nasctl.search.spaces.{_mod}")
    except ModuleNotFoundError as _e:  # pragma: no cover - during development only
        if _e.name != f"nasctl.search.spaces.{_mod}":
            raise

__all__ = ["SearchSpace", "get_space", "list_spaces", "register_space"]
