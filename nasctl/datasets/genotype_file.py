"""Genotype files (one genotype per line, ``#`` comments), read in chunks with bounded memory.

A file of any length is read line by line: :func:`check_genotype_file` validates every line first
(so bad input fails before any answer is printed), then :func:`genotype_chunks` hands out lists
of at most ``size`` genotypes. Memory is bounded by the chunk, not the file: 10 million lines
cost what ``size`` lines cost. A line longer than :data:`MAX_LINE_CHARS` is refused (a binary
or corrupt file, not a genotype).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from nasctl.errors import NasctlError

#: Longest genotype line accepted (characters); NB201's are about 90, mbconv's a few hundred.
MAX_LINE_CHARS = 65_536
#: Genotypes per chunk of :func:`genotype_chunks`.
CHUNK = 10_000


def iter_genotypes(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, genotype)`` of every non-empty, non-comment line."""
    try:
        f = path.open(encoding="utf-8")
    except OSError as e:
        raise NasctlError(f"cannot read genotype file {path}: {e.strerror or e}") from None
    with f:
        n = 0
        while True:
            try:
                line = f.readline(MAX_LINE_CHARS + 1)
            except UnicodeDecodeError as e:
                raise NasctlError(
                    f"{path} is not a UTF-8 text file ({e.reason}); expected one genotype a line"
                ) from None
            if not line:
                return
            n += 1
            if len(line) > MAX_LINE_CHARS:
                raise NasctlError(
                    f"{path}:{n}: line longer than {MAX_LINE_CHARS} characters; expected one "
                    "genotype a line"
                )
            g = line.strip()
            if g and not g.startswith("#"):
                yield n, g


def check_genotype_file(path: Path, validate: Callable[[str], object]) -> int:
    """Validate every genotype (``validate`` raises on a bad one); returns how many there are.
    An error names the file and line."""
    count = 0
    for n, g in iter_genotypes(path):
        try:
            validate(g)
        except NasctlError as e:
            raise type(e)(f"{path}:{n}: {e}") from None
        count += 1
    if not count:
        raise NasctlError(f"{path} has no genotypes (expected one per line)")
    return count


def genotype_chunks(path: Path, size: int = CHUNK) -> Iterator[list[str]]:
    """The file's genotypes, ``size`` at a time, in file order."""
    part: list[str] = []
    for _, g in iter_genotypes(path):
        part.append(g)
        if len(part) >= size:
            yield part
            part = []
    if part:
        yield part
