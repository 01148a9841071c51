"""Small ONNX models for the agent's tests (built with onnx.helper; no nasctl graph code), and the
graph ONNX Runtime runs for a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_model(batch: int | str = 1, channels: int = 8, size: int = 16) -> onnx.ModelProto:
    """x[batch,3,size,size] -> Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w")
    fw = numpy_helper.from_array(rng.standard_normal((10, channels)).astype(np.float32), "fw")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="/conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="/act"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="/gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="/flat"),
        helper.make_node("Gemm", ["f", "fw"], ["y"], name="/fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        [w, fw],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def save(model: onnx.ModelProto, path: Path, external: bool = False) -> Path:
    """Write ``model`` to ``path``; ``external``: weights go to ``<stem>.data`` beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.stem + ".data",
            size_threshold=0,
        )
    else:
        onnx.save_model(model, str(path))
    return path


def ort_optimized(model: onnx.ModelProto, tmp: Path) -> onnx.ModelProto:
    """The graph ONNX Runtime runs for ``model`` under the ``cpu`` device's session options (its
    optimized model, written to ``tmp / "optimized.onnx"``)."""
    import onnxruntime as ort
    from nasctl_agent.backends.ort import session_options

    path = tmp / "optimized.onnx"
    ort.InferenceSession(
        model.SerializeToString(),
        session_options(1, optimized_path=str(path)),
        providers=["CPUExecutionProvider"],
    )
    return onnx.load(path)
