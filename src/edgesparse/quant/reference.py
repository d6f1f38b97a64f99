"""The integer reference executor: the exact answer of an :class:`IntGraph`, op by op, in integers.

Convolutions accumulate int8 x int8 products exactly: they run as float64 convolutions on integer-valued
tensors, which is exact because every partial sum is an integer below 2^53 (the largest layer here,
K = 25,088 products of at most 2^14, stays below 2^29). Everything after the accumulation (bias, requantization,
pooling, residual adds) is int64 numpy arithmetic from :mod:`edgesparse.quant.fixedpoint`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgesparse.errors import QuantError
from edgesparse.quant.fixedpoint import INT8_MIN, quantize_tensor, requantize, rounding_shift, saturate_int8
from edgesparse.quant.graph import INPUT, IntGraph, IntOp

_EXACT_LIMIT = 2**53


def _exact(array: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float64)).to(device)


def _accumulate_conv(x: np.ndarray, op: IntOp, device: str = "cpu") -> np.ndarray:
    weight = op.arrays["weight"]
    bound = weight.shape[1] * weight.shape[2] * weight.shape[3] * 128 * 128
    if bound >= _EXACT_LIMIT:
        raise QuantError(f"op {op.name!r}: {bound} exceeds the exact accumulation range")
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN may pick FFT/Winograd; im2col + GEMM sums exactly
        acc = F.conv2d(_exact(x, device), _exact(weight, device), stride=op.window.stride,
                       padding=op.window.padding)
    return acc.cpu().numpy().astype(np.int64) + op.arrays["bias"].astype(np.int64).reshape(1, -1, 1, 1)


def _accumulate_linear(x: np.ndarray, op: IntOp, device: str = "cpu") -> np.ndarray:
    acc = _exact(x, device) @ _exact(op.arrays["weight"], device).T
    return acc.cpu().numpy().astype(np.int64) + op.arrays["bias"].astype(np.int64).reshape(1, -1)


def _weighted(op: IntOp, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    acc = _accumulate_conv(x, op, device) if op.kind == "conv" else _accumulate_linear(x, op, device)
    if not op.requant:
        return acc
    return requantize(acc, op.arrays["m"], op.arrays["shift"], relu=op.relu)


def _maxpool(op: IntOp, x: np.ndarray) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = op.window.kernel, op.window.stride, op.window.padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=INT8_MIN) if ph or pw else x
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    return windows.max(axis=(-2, -1)).astype(np.int8)


def _avgpool(op: IntOp, x: np.ndarray) -> np.ndarray:
    (kh, kw), (sh, sw) = op.window.kernel, op.window.stride
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.int64), (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    total = windows.sum(axis=(-2, -1))
    return saturate_int8(rounding_shift(total * op.attrs["m"], op.attrs["shift"]))


def _add(op: IntOp, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape != b.shape:
        raise QuantError(f"op {op.name!r} adds tensors of shapes {a.shape} and {b.shape}")
    total = a.astype(np.int64) * op.attrs["m_a"] + b.astype(np.int64) * op.attrs["m_b"]
    out = saturate_int8(rounding_shift(total, op.attrs["shift"]))
    return np.maximum(out, 0).astype(np.int8) if op.relu else out


def run_op(op: IntOp, inputs: list[np.ndarray], device: str = "cpu") -> np.ndarray:
    """Execute one op on its int8 inputs (``device`` runs the exact float64 accumulations, e.g. on a GPU)."""
    if op.weighted:
        return _weighted(op, inputs[0], device)
    if op.kind == "maxpool":
        return _maxpool(op, inputs[0])
    if op.kind == "avgpool":
        return _avgpool(op, inputs[0])
    if op.kind == "add":
        return _add(op, inputs[0], inputs[1])
    if op.kind == "relu":
        return np.maximum(inputs[0], 0).astype(np.int8)
    if op.kind == "flatten":
        return inputs[0].reshape(inputs[0].shape[0], -1)
    raise QuantError(f"op {op.name!r} has unknown kind {op.kind!r}")


def quantize_input(graph: IntGraph, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Normalized float images ``[N, C, H, W]`` -> the graph's int8 input."""
    images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(graph.input_shape):
        raise QuantError(f"the graph takes inputs [N, {', '.join(map(str, graph.input_shape))}], "
                         f"got {list(images.shape)}")
    return quantize_tensor(images, graph.input_scale)


def run_graph(graph: IntGraph, x: np.ndarray, keep: bool = False,
              device: str = "cpu") -> np.ndarray | dict[str, np.ndarray]:
    """Run the graph on int8 input ``x``; return the output (int32 logits or int8), or every tensor.

    ``device`` runs the float64 accumulations there (exact on any device: every partial sum is an integer
    below 2^53); everything else stays int64 numpy."""
    if x.dtype != np.int8:
        raise QuantError(f"the integer graph takes int8 input, got {x.dtype}")
    tensors: dict[str, np.ndarray] = {INPUT: x}
    users = {name: 0 for name in tensors}
    for op in graph.ops:
        for name in op.inputs:
            users[name] = users.get(name, 0) + 1
    for op in graph.ops:
        tensors[op.name] = run_op(op, [tensors[name] for name in op.inputs], device)
        if not keep:
            for name in op.inputs:
                users[name] -= 1
                if users[name] == 0:
                    del tensors[name]
    return tensors if keep else tensors[graph.output]


def dequantize_output(graph: IntGraph, output: np.ndarray) -> np.ndarray:
    """Real-valued outputs (logits) of :func:`run_graph`."""
    last = graph.ops[-1]
    if not last.requant:
        return output.astype(np.float64) * last.arrays["out_scale"].astype(np.float64)
    return output.astype(np.float64) * graph.scales[last.name]
