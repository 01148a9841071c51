"""Dependency floors exclude versions with a published security advisory (#18.4), and
docs/dependencies.md says why each floor is what it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
REPO = Path(__file__).resolve().parents[1]

#: package -> (first fixed version, advisories fixed there); keep in step with the docs table.
ADVISORIES = {
    "onnx": ("1.21.0", ["CVE-2024-27318", "CVE-2024-5187", "CVE-2026-27489"]),
    "lightgbm": ("4.6.0", ["CVE-2024-43598"]),
    "pyarrow": ("14.0.1", ["CVE-2023-47248"]),
    "scikit-learn": ("1.5.0", ["CVE-2024-5206"]),
    "torch": ("2.6.0", ["CVE-2025-32434"]),
    "setuptools": ("78.1.1", ["CVE-2024-6345", "CVE-2025-47273"]),
    "wheel": ("0.38.1", ["CVE-2022-40898"]),
}


def _requirements() -> dict[str, Requirement]:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = [*doc["project"]["dependencies"], *doc["build-system"]["requires"]]
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


def _lowest(req: Requirement) -> Version:
    """The lowest version a requirement admits (its >=, == or ~= bound)."""
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    assert bounds, f"{req} has no lower bound"
    return max(bounds)


@pytest.mark.parametrize("name", sorted(ADVISORIES))
def test_floor_excludes_known_advisories(name: str) -> None:
    fixed, cves = ADVISORIES[name]
    req = _requirements()[name]
    assert _lowest(req) >= Version(fixed), f"{req} admits versions before {fixed} ({cves})"


def test_every_floor_is_explained_in_the_docs() -> None:
    text = (REPO / "docs" / "dependencies.md").read_text()
    for name in _requirements():
        assert re.search(rf"^\| `{re.escape(name)}` ", text, re.M), f"{name} not in the table"
    for _, cves in ADVISORIES.values():
        for cve in cves:
            assert cve in text
