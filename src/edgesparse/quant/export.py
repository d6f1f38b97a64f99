"""Float model -> integer graph: trace, fold BatchNorm, calibrate activation scales, quantize to int8.

1. The masked weights are baked in and the model is traced with ``torch.fx`` (any model made of Conv2d,
   BatchNorm2d, ReLU, Linear, max/average pools, flatten, residual adds, dropout and identity works; anything else
   is refused, naming the first unsupported layer by path and type, or function).
2. Conv -> BatchNorm -> ReLU chains fuse into one op: ``W' = W * g/sqrt(v+e)``, ``b' = (b - mu) * g/sqrt(v+e) + beta``
   (scaling a filter keeps its zeros, so the sparsity pattern survives). Add -> ReLU fuses too.
3. The fused float graph runs on calibration batches; each tensor's scale is ``max|x| / 127`` (symmetric).
4. Weights: int8, symmetric per output channel (``s_w = max|W_c| / 127``); biases: int32 at ``s_in * s_w``;
   requantization multipliers ``s_in * s_w / s_out`` as fixed point (:mod:`edgesparse.quant.fixedpoint`).
   The last layer keeps int32 accumulators (logits), so no ranking is lost to int8 rounding.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from edgesparse.errors import QuantError
from edgesparse.quant.fixedpoint import MANTISSA_BITS, quantize_multiplier, quantize_multipliers
from edgesparse.quant.graph import INPUT, IntGraph, IntOp, TypedOp
from edgesparse.sparsity import sparse_mask_of


@dataclass
class FloatOp(TypedOp):
    """A fused op of the float graph: the same kinds as :class:`IntOp`, with float parameters."""

    name: str
    kind: str
    inputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None


def layer_patterns(model: nn.Module) -> dict[str, str]:
    """The pattern of every masked layer of ``model``."""
    patterns = {}
    for name, module in model.named_modules():
        holder = sparse_mask_of(module)
        if holder is not None:
            patterns[name] = str(holder.pattern)
    return patterns


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value), int(value)]


def _fold(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    base = bias.detach().double() if bias is not None else torch.zeros_like(scale)
    folded_w = weight.detach().double() * scale.view(-1, *([1] * (weight.dim() - 1)))
    folded_b = (base - bn.running_mean.double()) * scale + bn.bias.detach().double()
    return folded_w, folded_b


class _Builder:
    """Walks an FX graph and emits fused float ops."""

    def __init__(self, model: nn.Module, traced: fx.GraphModule, shapes: dict[str, torch.Size]) -> None:
        self.model, self.traced, self.shapes = model, traced, shapes
        self.ops: list[FloatOp] = []
        self.alias: dict[str, str] = {}  # fx node name -> float tensor name
        self.consumed: set[str] = set()

    def tensor(self, node: fx.Node) -> str:
        return self.alias[node.name]

    def only_user(self, node: fx.Node) -> fx.Node | None:
        users = list(node.users)
        return users[0] if len(users) == 1 else None

    def is_module(self, node: fx.Node | None, kind: type) -> bool:
        return (node is not None and node.op == "call_module"
                and isinstance(self.model.get_submodule(node.target), kind))

    def is_relu(self, node: fx.Node | None) -> bool:
        return node is not None and (self.is_module(node, nn.ReLU)
                                     or (node.op == "call_function" and node.target in (F.relu, torch.relu)))

    def is_flatten(self, node: fx.Node) -> bool:
        """torch.flatten, .flatten(), .view() or .reshape() that keeps the batch and flattens the rest, row-major (the
        graph's flatten), judged by the traced shapes."""
        if not ((node.op == "call_function" and node.target in (torch.flatten, torch.reshape))
                or (node.op == "call_method" and node.target in ("flatten", "view", "reshape"))):
            return False
        before, after = self.shapes.get(node.args[0].name), self.shapes.get(node.name)
        return before is not None and after is not None and len(after) == 2 and after[0] == before[0]

    def emit(self, node: fx.Node, op: FloatOp, last: fx.Node) -> None:
        """Add ``op`` computed from ``node``'s inputs; its output stands for ``last`` (the end of a fused chain)."""
        self.ops.append(op)
        self.alias[last.name] = op.name
        self.alias[node.name] = op.name

    def fuse_relu(self, op: FloatOp, node: fx.Node) -> fx.Node:
        user = self.only_user(node)
        if self.is_relu(user):
            op.attrs["relu"] = True
            self.consumed.add(user.name)
            return user
        op.attrs["relu"] = False
        return node

    def build(self) -> list[FloatOp]:
        for node in self.traced.graph.nodes:
            if node.name in self.consumed:
                continue
            if node.op == "placeholder":
                self.alias[node.name] = INPUT
            elif node.op == "output":
                continue
            elif node.op == "call_module":
                self.module_node(node, self.model.get_submodule(node.target))
            elif node.op == "call_function" and node.target in (operator.add, torch.add):
                self.add_node(node)
            elif node.op == "call_method" and node.target == "size":
                continue  # a shape query, as in x.view(x.size(0), -1): its user is checked itself
            elif self.is_flatten(node):
                self.ops.append(FloatOp(node.name, "flatten", [self.tensor(node.args[0])]))
                self.alias[node.name] = node.name
            elif self.is_relu(node):
                self.emit(node, FloatOp(node.name, "relu", [self.tensor(node.args[0])]), node)
            else:
                raise _unsupported(node)
        return self.ops

    def module_node(self, node: fx.Node, module: nn.Module) -> None:
        source = self.tensor(node.args[0])
        name = str(node.target)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            self.weighted(node, module, source, name)
        elif isinstance(module, nn.ReLU):
            self.emit(node, FloatOp(name, "relu", [source]), node)
        elif isinstance(module, nn.MaxPool2d):
            if module.dilation not in (1, (1, 1)) or module.ceil_mode:
                raise QuantError(f"{name}: max pool with dilation or ceil_mode is not supported")
            self.emit(node, FloatOp(name, "maxpool", [source], {
                "kernel": _pair(module.kernel_size), "stride": _pair(module.stride or module.kernel_size),
                "padding": _pair(module.padding)}), node)
        elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
            self.avgpool(node, module, source, name)
        elif isinstance(module, nn.Flatten):
            self.emit(node, FloatOp(name, "flatten", [source]), node)
        elif isinstance(module, (nn.Dropout, nn.Identity)):
            self.alias[node.name] = source
        else:
            raise QuantError(f"cannot export layer {name!r} of type {type(module).__qualname__} (from "
                             f"{type(module).__module__}): the integer graph has no such op (it takes {GRAPH_OPS})")

    def weighted(self, node: fx.Node, module: nn.Module, source: str, name: str) -> None:
        weight, bias = module.weight.detach().double(), None if module.bias is None else module.bias.detach().double()
        last = node
        user = self.only_user(node)
        if isinstance(module, nn.Conv2d) and self.is_module(user, nn.BatchNorm2d):
            weight, bias = _fold(weight, bias, self.model.get_submodule(user.target))
            self.consumed.add(user.name)
            last = user
        if bias is None:
            bias = torch.zeros(weight.shape[0], dtype=torch.float64)
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or _pair(module.dilation) != [1, 1] or module.padding_mode != "zeros":
                raise QuantError(f"{name}: grouped, dilated or non-zero-padded convolutions are not supported")
            attrs = {"kernel": _pair(module.kernel_size), "stride": _pair(module.stride),
                     "padding": _pair(module.padding)}
            op = FloatOp(name, "conv", [source], attrs, weight, bias)
        else:
            op = FloatOp(name, "linear", [source], {}, weight, bias)
        last = self.fuse_relu(op, last)
        self.emit(node, op, last)

    def avgpool(self, node: fx.Node, module: nn.Module, source: str, name: str) -> None:
        height, width = self.shapes[node.args[0].name][-2:]
        if isinstance(module, nn.AdaptiveAvgPool2d):
            out_h, out_w = _pair(module.output_size)
            if height % out_h or width % out_w:
                raise QuantError(f"{name}: adaptive pool {height}x{width} -> {out_h}x{out_w} is not a whole window")
            kernel = [height // out_h, width // out_w]
            if kernel == [1, 1]:  # identity (e.g. VGG's 7x7 pool on a 7x7 map)
                self.alias[node.name] = source
                return
            stride = kernel
        else:
            if _pair(module.padding) != [0, 0]:
                raise QuantError(f"{name}: padded average pooling is not supported")
            kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
        self.emit(node, FloatOp(name, "avgpool", [source], {"kernel": kernel, "stride": stride, "padding": [0, 0]}),
                  node)

    def add_node(self, node: fx.Node) -> None:
        a, b = (self.tensor(arg) for arg in node.args[:2])
        op = FloatOp(node.name, "add", [a, b])
        last = self.fuse_relu(op, node)
        self.emit(node, op, last)


GRAPH_OPS = ("Conv2d, Linear, BatchNorm2d after a Conv2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, "
             "Dropout, Identity, residual + and flatten, view or reshape to [N, -1]")


def _unsupported(node: fx.Node) -> QuantError:
    """The error for the first traced function or method the integer graph lacks, with the module it sits in."""
    target = node.target
    what = (f"method .{target}()" if node.op == "call_method" else
            f"function {getattr(target, '__module__', None) or 'builtins'}.{getattr(target, '__name__', target)}")
    stack = node.meta.get("nn_module_stack") or {}
    inside = ""
    if stack:
        path, kind = list(stack.values())[-1]
        inside = f" in layer {path!r} of type {getattr(kind, '__qualname__', kind)}"
    return QuantError(f"cannot export {what}{inside} (node {node.name!r}): the integer graph has no such op "
                      f"(it takes {GRAPH_OPS})")


def float_graph(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[list[FloatOp], dict[str, str]]:
    """Trace ``model`` in eval mode into fused float ops; also return each masked layer's pattern.

    Masked layers are leaves of the trace (torch's parametrized classes live in ``torch.nn``), and their
    ``weight`` is the masked weight, so the pattern carries into the graph without touching the model.
    """
    was_training = model.training
    model.eval()
    try:
        traced = fx.symbolic_trace(model)
        shapes: dict[str, torch.Size] = {}
        device = next(model.parameters()).device  # torch's meta device for a shape-only model: nothing allocated
        with torch.no_grad():
            _ShapeRecorder(traced, shapes).run(torch.zeros(1, *input_shape, device=device))
        return _Builder(model, traced, shapes).build(), layer_patterns(model)
    except QuantError:
        raise
    except Exception as error:  # fx raises many kinds for untraceable code
        raise QuantError(f"cannot trace the model for export: {type(error).__name__}: "
                         f"{str(error).splitlines()[0]}") from None
    finally:
        model.train(was_training)


class _ShapeRecorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule, shapes: dict[str, torch.Size]) -> None:
        super().__init__(module)
        self.shapes = shapes
        self.extra_traceback = False  # fx would append its trace to the one-line error of run_node

    def run_node(self, node: fx.Node) -> Any:
        try:
            result = super().run_node(node)
        except RuntimeError as error:  # one line naming the layer, not fx's trace
            where = node.target if node.op == "call_module" else node.name
            raise QuantError(f"the input does not fit layer {where!r}: {str(error).splitlines()[0]}") from None
        if isinstance(result, torch.Tensor):
            self.shapes[node.name] = result.shape
        return result


def run_float(ops: list[FloatOp], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Execute the fused float graph in float64; return every tensor (the calibration source)."""
    tensors = {INPUT: x.double()}
    for op in ops:
        inputs = [tensors[name] for name in op.inputs]
        if op.kind == "conv":
            y = F.conv2d(inputs[0], op.weight, op.bias, op.window.stride, op.window.padding)
        elif op.kind == "linear":
            y = F.linear(inputs[0], op.weight, op.bias)
        elif op.kind == "maxpool":
            y = F.max_pool2d(inputs[0], op.window.kernel, op.window.stride, op.window.padding)
        elif op.kind == "avgpool":
            y = F.avg_pool2d(inputs[0], op.window.kernel, op.window.stride)
        elif op.kind == "add":
            y = inputs[0] + inputs[1]
        elif op.kind == "relu":
            y = inputs[0].clamp_min(0)
        else:  # flatten
            y = inputs[0].flatten(1)
        if op.relu:
            y = y.clamp_min(0)
        tensors[op.name] = y
    return tensors


def calibrate(ops: list[FloatOp], batches: Iterable[torch.Tensor]) -> dict[str, float]:
    """Symmetric int8 scale of every tensor: the largest magnitude seen over ``batches``, over 127."""
    peaks: dict[str, float] = {}
    seen = 0
    for images in batches:
        seen += 1
        for name, tensor in run_float(ops, images).items():
            peaks[name] = max(peaks.get(name, 0.0), float(tensor.abs().max()))
    if not seen:
        raise QuantError("calibration needs at least one batch of images")
    passthrough = {op.name: op.inputs[0] for op in ops if op.kind in ("maxpool", "relu", "flatten")}
    scales = {}
    for name, peak in peaks.items():
        source = name
        while source in passthrough:  # max pool, ReLU and flatten keep their input's scale
            source = passthrough[source]
        scales[name] = max(peaks[source], 1e-8) / 127.0
    return scales


def _quantize_weighted(op: FloatOp, s_in: float, s_out: float, last: bool) -> IntOp:
    weight = op.weight.numpy()
    flat = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1)
    s_w = np.where(flat > 0, flat / 127.0, 1.0)
    view = (-1,) + (1,) * (weight.ndim - 1)
    w_q = np.clip(np.rint(weight / s_w.reshape(view)), -127, 127).astype(np.int8)
    acc_scale = s_in * s_w
    bias_q = np.rint(op.bias.numpy() / acc_scale)
    if np.abs(bias_q).max(initial=0) >= 2**31:
        raise QuantError(f"{op.name}: bias does not fit int32 at the accumulator scale")
    arrays = {"weight": w_q, "bias": bias_q.astype(np.int32)}
    attrs = dict(op.attrs)
    if last:
        attrs["requant"] = False
        attrs.pop("relu", None)
        arrays["out_scale"] = acc_scale.astype(np.float32)
    else:
        arrays["m"], arrays["shift"] = quantize_multipliers(acc_scale / s_out)
    return IntOp(op.name, op.kind, list(op.inputs), attrs, arrays)


def _quantize_add(op: FloatOp, s_a: float, s_b: float, s_out: float) -> IntOp:
    real_a, real_b = s_a / s_out, s_b / s_out
    exponent = max(math.frexp(real_a)[1], math.frexp(real_b)[1])
    shift = MANTISSA_BITS - exponent
    if not 1 <= shift <= 62:
        raise QuantError(f"{op.name}: input/output scale ratio {max(real_a, real_b)} cannot be represented")
    m_a, m_b = (min(round(r * 2.0**shift), 2**31 - 1) for r in (real_a, real_b))
    return IntOp(op.name, "add", list(op.inputs),
                 {"m_a": max(1, m_a), "m_b": max(1, m_b), "shift": shift, "relu": op.relu})


def quantize(ops: list[FloatOp], scales: dict[str, float], input_shape: tuple[int, int, int],
             mean: tuple[float, ...], std: tuple[float, ...], patterns: dict[str, str]) -> IntGraph:
    """Turn calibrated float ops into the integer graph."""
    int_ops = []
    for position, op in enumerate(ops):
        last = position == len(ops) - 1
        if op.weighted:
            int_ops.append(_quantize_weighted(op, scales[op.inputs[0]], scales[op.name], last))
        elif op.kind == "add":
            int_ops.append(_quantize_add(op, scales[op.inputs[0]], scales[op.inputs[1]], scales[op.name]))
        elif op.kind == "avgpool":
            kh, kw = op.window.kernel
            m, shift = quantize_multiplier(scales[op.inputs[0]] / (scales[op.name] * kh * kw))
            int_ops.append(IntOp(op.name, "avgpool", list(op.inputs), {**op.attrs, "m": m, "shift": shift}))
        else:
            int_ops.append(IntOp(op.name, op.kind, list(op.inputs), dict(op.attrs)))
    graph = IntGraph(tuple(input_shape), scales[INPUT], tuple(mean), tuple(std), int_ops,
                     {name: float(s) for name, s in scales.items()}, patterns)
    graph.validate()
    return graph


def export_model(model: nn.Module, calibration: Iterable[torch.Tensor], input_shape: tuple[int, int, int],
                 mean: tuple[float, ...] = (0.0,), std: tuple[float, ...] = (1.0,)) -> IntGraph:
    """The whole export: trace and fuse, calibrate on ``calibration`` batches, quantize."""
    ops, patterns = float_graph(model, input_shape)
    scales = calibrate(ops, calibration)
    return quantize(ops, scales, input_shape, mean, std, patterns)
