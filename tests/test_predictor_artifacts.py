"""A predictor folder's manifest cannot reach outside the folder (#18.1): a name with a path in
it, an absolute name or a symlink out of the folder is refused before any file is read, with the
same message whether the file exists or not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from nasctl.errors import PredictorError
from nasctl.predictor.artifacts import read_dir, write_dir


def _folder(tmp_path: Path) -> Path:
    d = tmp_path / "pred"
    write_dir(d, {"device_id": "x"}, {"gbdt.txt": "tree\n"}, {})
    assert read_dir(d)[1] == {"gbdt.txt": "tree\n"}  # a sound folder loads
    return d


def _add(d: Path, name: str, digest: str) -> None:
    man = json.loads((d / "manifest.json").read_text())
    man["files"][name] = digest
    (d / "manifest.json").write_text(json.dumps(man))


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "name",
    ["../secret.txt", "../../etc/passwd", "/etc/passwd", "sub/gbdt.txt", "..", "a\\b.txt", ""],
)
def test_manifest_names_outside_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    d = _folder(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside\n")
    _add(d, name, _digest(secret))  # even with the right checksum
    with pytest.raises(PredictorError, match="not a plain file name") as exists:
        read_dir(d)
    secret.unlink()
    with pytest.raises(PredictorError) as missing:
        read_dir(d)
    assert str(exists.value) == str(missing.value)  # the message tells nothing about the file


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    d = _folder(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside\n")
    (d / "extra.txt").symlink_to(secret)
    _add(d, "extra.txt", _digest(secret))
    with pytest.raises(PredictorError, match="outside the predictor folder"):
        read_dir(d)
