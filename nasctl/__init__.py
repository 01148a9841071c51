"""nasctl: latency-predictor-first hardware-aware neural architecture search."""

from __future__ import annotations

__version__ = "0.1.0"

from nasctl.errors import NasctlError

__all__ = ["NasctlError", "__version__"]
