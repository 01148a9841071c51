"""Search spaces: a registry of genotype -> architecture-graph families.

Built-in: ``mbconv``, ``resnet``, ``nb201``, ``fbnet`` (each module documents its genotype
format). A user's own space loads with ``get_space("package.module:SPACE")``.
"""

from __future__ import annotations

# Built-in spaces register themselves on import.
from nasctl.spaces import fbnet, kernels, mbconv, nb201, resnet  # noqa: F401
from nasctl.spaces.base import (
    SearchSpace,
    get_space,
    list_spaces,
    other_choice,
    register_space,
)

__all__ = ["SearchSpace", "get_space", "list_spaces", "other_choice", "register_space"]
