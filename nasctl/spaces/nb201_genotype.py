"""NAS-Bench-201 arch strings: the op and edge order, parsing and formatting.

Public API of this module (used by :mod:`nasctl.spaces.nb201`, :mod:`nasctl.spaces.nb201_arrays`
and tests): :func:`parse_genotype`, :func:`format_genotype`, :func:`genotype_code`.
"""

from __future__ import annotations

from nasctl.errors import SpaceError

#: Official op order (op code = index; used by ``data/nb201_order.txt``).
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: Edges (source, target) in arch-string order.
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_ARCHS = len(OPS) ** len(EDGES)  # 15,625


def parse_genotype(genotype: str) -> tuple[str, ...]:
    """Official arch string -> six op names in :data:`EDGES` order."""
    if not isinstance(genotype, str) or not genotype.startswith("|") or not genotype.endswith("|"):
        raise SpaceError(
            f"nb201 genotype {genotype!r} must look like "
            "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' (starts and ends with '|')"
        )
    groups = genotype[1:-1].split("|+|")
    if len(groups) != 3:
        raise SpaceError(
            f"nb201 genotype {genotype!r} has {len(groups)} node groups separated by '|+|'; "
            "expected 3"
        )
    ops: list[str] = []
    for target, group in enumerate(groups, start=1):
        tokens = group.split("|")
        if len(tokens) != target:
            raise SpaceError(
                f"nb201 genotype: node {target} has {len(tokens)} edges ({group!r}); "
                f"expected {target}"
            )
        for source, tok in enumerate(tokens):
            op, sep, src = tok.partition("~")
            if op not in OPS:
                raise SpaceError(
                    f"nb201 genotype: edge {source}->{target} op {op!r} is unknown; "
                    f"expected one of {', '.join(OPS)}"
                )
            if not sep or src != str(source):
                raise SpaceError(
                    f"nb201 genotype: edge token {tok!r} of node {target} must be '{op}~{source}'"
                )
            ops.append(op)
    return tuple(ops)


def format_genotype(ops: tuple[str, ...] | list[str]) -> str:
    """Six op names in :data:`EDGES` order -> official arch string (inverse of
    :func:`parse_genotype`)."""
    ops = tuple(ops)
    if len(ops) != len(EDGES) or any(o not in OPS for o in ops):
        raise SpaceError(f"nb201: expected 6 ops from {', '.join(OPS)}; got {ops!r}")
    parts, k = [], 0
    for target in (1, 2, 3):
        parts.append("|".join(f"{ops[k + s]}~{s}" for s in range(target)))
        k += target
    return "|" + "|+|".join(parts) + "|"


def genotype_code(ops: tuple[str, ...]) -> str:
    """Six op names -> six-digit op code (index in :data:`OPS` per edge), as in
    ``data/nb201_order.txt``."""
    return "".join(str(OPS.index(o)) for o in ops)
