"""Backends of the agent: ``onnxruntime`` (the cpu device), ``trtexec`` and ``tensorrt`` (the
TensorRT Python API). Each is imported only when a request needs it."""
