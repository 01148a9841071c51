"""ONNX node names -> graph node ids (the host writes graph node ``X`` as ONNX nodes ``X`` and
``X/<part>``)."""

from __future__ import annotations


def to_graph_ids(names: list[str], ids: set[str] | None) -> list[str]:
    """Map ONNX node names to graph node ids: ``"<id>/<part>"`` -> ``"<id>"``; unchanged when
    ``ids`` is None (user ONNX) or nothing matches."""
    if ids is None:
        return names
    out: list[str] = []
    for n in names:
        cur = n
        while cur not in ids and "/" in cur.strip("/"):
            cur = cur.rsplit("/", 1)[0]
        mapped = cur if cur in ids else n
        if mapped not in out:
            out.append(mapped)
    return out
