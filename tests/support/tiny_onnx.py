"""Tiny ONNX models with rembg's signature, built by the tests (no weights committed or fetched).

Each is a 1x1 convolution that scores how far a pixel is from a green screen:
after rembg's normalisation, person colours score high, pure green very low.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GREEN_SCREEN = (0, 200, 0)
"""The background the tiny models separate a person from."""


def build_rembg_model(path: Path, *, size: int | None = 320, sigmoid: bool = True, extra_outputs: int = 6) -> Path:
    """Write a model: input ``input.1`` (1, 3, size, size) (dynamic when None), first output (1, 1, S, S).

    u2net ends with a sigmoid and has seven side outputs (rembg reads the first);
    BiRefNet gives logits.  `extra_outputs` adds decoy outputs after the first.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spatial: list[int | str] = [size, size] if size else ["height", "width"]
    weights = np.array([1.5, -3.0, 1.5], dtype=np.float32).reshape(1, 3, 1, 1)  # R + B - 2 G
    bias = np.array([2.0], dtype=np.float32)
    nodes = [helper.make_node("Conv", ["input.1", "w", "b"], ["score"])]
    first = "score"
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["score"], ["d0"]))
        first = "d0"
    outputs = [helper.make_tensor_value_info(first, TensorProto.FLOAT, [1, 1, *spatial])]
    for index in range(extra_outputs):  # decoys: the inverted map
        name = f"d{index + 1}"
        nodes.append(helper.make_node("Neg", [first], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, *spatial]))
    graph = helper.make_graph(
        nodes,
        "tiny_rembg",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, *spatial])],
        outputs,
        initializer=[numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
