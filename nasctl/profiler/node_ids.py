"""ONNX node names -> graph node ids (the host writes graph node ``X`` as ONNX nodes ``X`` and
``X/<part>``)."""

from __future__ import annotations

import re

#: Q/DQ nodes written by ONNX Runtime's quantizer (``<tensor>_QuantizeLinear``, a copy per
#: consumer ``.../duplicated``) and ORT's renamed folded weights (``ConvBnFusion_W_<tensor>``)
_QDQ = re.compile(
    r"^(ConvBnFusion_(W|BN_B)_)?(?P<t>.+?)_(Quantize|Dequantize)Linear(/duplicated)?$"
)


def _tensor_owner(name: str) -> str:
    """The tensor a Q/DQ node quantizes, minus an initializer suffix (``.weight``): the graph
    node that produces or holds it; other names unchanged."""
    m = _QDQ.match(name)
    if not m:
        return name
    t = m.group("t")
    head, dot, tail = t.rpartition(".")
    return head if dot and "/" not in tail else t


def to_graph_ids(names: list[str], ids: set[str] | None) -> list[str]:
    """Map ONNX node names to graph node ids: ``"<id>/<part>"`` -> ``"<id>"``; unchanged when
    ``ids`` is None (user ONNX) or nothing matches."""
    if ids is None:
        return names
    out: list[str] = []
    for n in names:
        cur = _tensor_owner(n)
        while cur not in ids and "/" in cur.strip("/"):
            cur = cur.rsplit("/", 1)[0]
        mapped = cur if cur in ids else n
        if mapped not in out:
            out.append(mapped)
    return out
