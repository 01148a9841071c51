"""Accuracy of a trained network at INT8 (issue #15.3, the estimator side): the network is
exported to ONNX, written as Q/DQ INT8 by :func:`nasctl.arch.precision.to_int8` calibrated on
the caller's training images, and run by ONNX Runtime on the held-out images.

A separate module so that an estimator that trains (``train:digits``) calls it on the network it
trained: ``int8_accuracy(net, x_calib, x_val, y_val)``.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nasctl.errors import SearchError


def to_onnx_model(net: Any, example: Any) -> Any:
    """``net`` (eval mode) as an ONNX model with a dynamic batch axis (TorchScript exporter)."""
    import onnx
    import torch

    buf = io.BytesIO()
    net.eval()
    with torch.no_grad():
        torch.onnx.export(
            net, (example,), buf,  # type: ignore[arg-type]  # a file object works too
            dynamo=False, opset_version=17, do_constant_folding=True,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
        )  # fmt: skip
    return onnx.load_from_string(buf.getvalue())


def onnx_accuracy(model: Any, x_val: np.ndarray, y_val: np.ndarray) -> float:
    """Top-1 accuracy (%) of an ONNX classifier run by ONNX Runtime (1 thread)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: x_val.astype(np.float32)})[0]
    return float((logits.argmax(axis=1) == y_val).mean()) * 100.0


def int8_accuracy(
    net: Any,
    x_calib: Any,
    x_val: Any,
    y_val: Any,
    activations: str = "uint8",
) -> tuple[float, float]:
    """(FP32 accuracy %, INT8 accuracy %) of the trained ``net`` on ``(x_val, y_val)``, both
    run by ONNX Runtime; INT8 = Q/DQ calibrated on ``x_calib`` (training images, N x C x H x W).
    """
    from nasctl.arch.precision import to_int8

    xc = np.asarray(x_calib, dtype=np.float32)
    xv, yv = np.asarray(x_val, dtype=np.float32), np.asarray(y_val)
    if xc.ndim != 4 or xv.ndim != 4 or xc.shape[1:] != xv.shape[1:]:
        raise SearchError(
            f"int8_accuracy needs image batches of one shape; got {xc.shape} and {xv.shape}"
        )
    import torch

    fp32 = to_onnx_model(net, torch.from_numpy(xc[:1]))
    with tempfile.TemporaryDirectory(prefix="nasctl-calib-") as tmp:
        np.save(Path(tmp) / "calib.npy", xc)
        q, _ = to_int8(fp32, tmp, activations=activations)
    return onnx_accuracy(fp32, xv, yv), onnx_accuracy(q, xv, yv)


def trained_accuracies(
    estimator: Any,
    trained: Any,
    precisions: list[str] | tuple[str, ...],
    activations: str = "uint8",
    calib_images: int = 256,
) -> dict[str, float]:
    """``{precision: held-out accuracy %}`` of a training estimator's trained network
    (``estimator.train(...)`` -> ``TrainedNet``) at each of ``precisions`` (fp32, fp16, int8):
    its graph written with the trained weights (FP32), as FP16 and as Q/DQ INT8 calibrated on
    ``calib_images`` of the estimator's training images, each scored by
    ``estimator.evaluate_onnx`` (ONNX Runtime) on its held-out images. One training, one
    evaluation per precision."""
    from nasctl.arch.onnx_io import to_onnx
    from nasctl.arch.precision import to_fp16, to_int8

    fp32 = to_onnx(trained.graph, params=trained.module.export_params())
    out: dict[str, float] = {}
    for p in precisions:
        if p == "fp32":
            model = fp32
        elif p == "fp16":
            model = to_fp16(fp32)
        elif p == "int8":
            shape = tuple(trained.graph.input_shape)
            xc = estimator._batch(estimator.data.x_train[:calib_images], shape).numpy()
            with tempfile.TemporaryDirectory(prefix="nasctl-calib-") as tmp:
                np.save(Path(tmp) / "calib.npy", xc)
                model, _ = to_int8(fp32, tmp, activations=activations)
        else:
            raise SearchError(f"precision must be fp32, fp16 or int8; got {p!r}")
        out[p] = estimator.evaluate_onnx(model)
    return out


def trained_int8_accuracy(
    estimator: Any, trained: Any, activations: str = "uint8", calib_images: int = 256
) -> tuple[float, float]:
    """(FP32 %, INT8 %) of a training estimator's trained network (see
    :func:`trained_accuracies`)."""
    acc = trained_accuracies(estimator, trained, ("fp32", "int8"), activations, calib_images)
    return acc["fp32"], acc["int8"]
