"""The framework-free integer graph: int8 tensors, int32 biases and fixed-point requantization per op.

Ops (``IntOp.kind``) and their exact semantics (see :mod:`edgesparse.quant.reference` for the code):

- ``conv``: ``acc = conv2d(x, weight, stride, padding) + bias`` (int32); ``y = requant(acc, m[c], shift[c])``;
  ``relu`` fused. The graph's last op may keep ``acc`` (``requant = False``): int32 logits, dequantized by
  ``out_scale[c]``.
- ``linear``: the same on ``[N, in]`` inputs.
- ``maxpool``: window maximum (padding counts as -128).
- ``avgpool``: window sum, then ``requant(sum, m, shift)``; a global average pool is the window = input case.
- ``add``: ``y = sat((a * m_a + b * m_b + 2^(shift-1)) >> shift)``: both inputs rescaled to the output scale.
- ``relu``: ``max(x, 0)``; ``flatten``: ``[N, C, H, W] -> [N, C*H*W]``.

Every op's output tensor is named after the op; ``"input"`` is the int8 image, quantized at ``input_scale``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from edgesparse.errors import PatternError, QuantError
from edgesparse.pattern import DensePattern, parse_pattern

KINDS = ("conv", "linear", "maxpool", "avgpool", "add", "relu", "flatten")
WEIGHTED = ("conv", "linear")  # the ops that run on the array
WINDOWED = ("conv", "maxpool", "avgpool")  # the ops that carry kernel, stride and padding attributes
INPUT = "input"

# Arrays each kind carries, with their dtypes.
ARRAYS: dict[str, dict[str, type]] = {
    "conv": {"weight": np.int8, "bias": np.int32, "m": np.int32, "shift": np.int32},
    "linear": {"weight": np.int8, "bias": np.int32, "m": np.int32, "shift": np.int32},
    "avgpool": {},
    "maxpool": {},
    "add": {},
    "relu": {},
    "flatten": {},
}
LOGIT_ARRAYS = {"weight": np.int8, "bias": np.int32, "out_scale": np.float32}


@dataclass(frozen=True)
class Window:
    """Where a convolution or pooling reads: kernel, stride and padding, each (height, width). A linear layer reads
    the 1x1 window of a 1x1 map."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The output map's (height, width) on a ``height`` x ``width`` input."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1


class TypedOp:
    """Typed views of an op's ``kind`` and ``attrs`` (the stored form: the packed file's JSON), one home for their
    defaults; :meth:`IntGraph.validate` checks the attributes once. Shared by the integer and the float graph."""

    name: str
    kind: str
    attrs: dict[str, Any]

    @property
    def weighted(self) -> bool:
        """The op runs on the array (a convolution or a linear layer)."""
        return self.kind in WEIGHTED

    @property
    def window(self) -> Window:
        """Kernel, stride and padding of a windowed op; the 1x1 window of a linear layer."""
        if self.kind == "linear":
            return Window((1, 1))
        if self.kind not in WINDOWED:
            raise QuantError(f"op {self.name!r} ({self.kind}) has no window")
        attrs = self.attrs
        return Window(tuple(attrs["kernel"]), tuple(attrs["stride"]), tuple(attrs.get("padding", (0, 0))))

    @property
    def relu(self) -> bool:
        """ReLU is fused into the op's output."""
        return bool(self.attrs.get("relu", False))


@dataclass
class IntOp(TypedOp):
    """One integer op; its output tensor has the op's name."""

    name: str
    kind: str
    inputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def requant(self) -> bool:
        """The op requantizes to int8 (only the graph's last weighted op may keep int32 logits)."""
        return bool(self.attrs.get("requant", True))

    def expected_arrays(self) -> dict[str, type]:
        if self.weighted and not self.requant:
            return LOGIT_ARRAYS
        return ARRAYS[self.kind]


@dataclass
class IntGraph:
    """A whole integer network: input description, ops in execution order, tensor scales, layer patterns."""

    input_shape: tuple[int, int, int]
    input_scale: float
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    ops: list[IntOp]
    scales: dict[str, float]
    patterns: dict[str, str] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.ops[-1].name

    def op(self, name: str) -> IntOp:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def validate(self) -> None:
        """Check the graph is well formed; raise :class:`QuantError` naming the first problem."""
        if not self.ops:
            raise QuantError("the integer graph has no ops")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise QuantError(f"input shape must be (C, H, W) with positive sizes, got {self.input_shape}")
        if not (np.isfinite(self.input_scale) and self.input_scale > 0):
            raise QuantError(f"input scale must be positive, got {self.input_scale}")
        known = {INPUT}
        for position, op in enumerate(self.ops):
            if op.kind not in KINDS:
                raise QuantError(f"op {op.name!r} has unknown kind {op.kind!r}")
            if op.name in known:
                raise QuantError(f"op name {op.name!r} is used twice")
            missing = [name for name in op.inputs if name not in known]
            if missing:
                raise QuantError(f"op {op.name!r} reads {missing}, which no earlier op produces")
            arity = 2 if op.kind == "add" else 1
            if len(op.inputs) != arity:
                raise QuantError(f"op {op.name!r} ({op.kind}) takes {arity} input(s), has {len(op.inputs)}")
            if not op.requant and position != len(self.ops) - 1:
                raise QuantError(f"op {op.name!r} keeps int32 outputs but is not the graph's last op")
            expected = op.expected_arrays()
            if set(op.arrays) != set(expected):
                raise QuantError(f"op {op.name!r} carries arrays {sorted(op.arrays)}, expected {sorted(expected)}")
            for key, dtype in expected.items():
                if op.arrays[key].dtype != dtype:
                    raise QuantError(f"op {op.name!r} array {key!r} is {op.arrays[key].dtype}, expected "
                                     f"{np.dtype(dtype)}")
            _validate_attrs(op)
            known.add(op.name)
        self.shapes()
        self._validate_patterns()

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-image shape of every tensor (``(C, H, W)`` or ``(F,)``); raises if any op's inputs do not fit."""
        shapes: dict[str, tuple[int, ...]] = {INPUT: tuple(self.input_shape)}
        for op in self.ops:
            shapes[op.name] = _output_shape(op, [shapes[name] for name in op.inputs])
        return shapes

    def _validate_patterns(self) -> None:
        weighted = {op.name: op for op in self.ops if op.weighted}
        for name, spec in self.patterns.items():
            if name not in weighted:
                raise QuantError(f"pattern {spec!r} is recorded for {name!r}, which is not a conv or linear op")
            try:
                pattern = parse_pattern(spec)
            except PatternError as error:
                raise QuantError(f"layer {name!r}: {error}") from None
            if isinstance(pattern, DensePattern):
                raise QuantError(f"layer {name!r}: only pruned layers record a pattern, got 'dense'")
            weight = weighted[name].arrays["weight"]
            shaped = weight if weight.ndim == 4 else weight.reshape(*weight.shape, 1, 1)
            problem = pattern.admits(torch.from_numpy(shaped != 0))
            if problem:
                raise QuantError(f"layer {name!r} does not follow pattern {spec}: {problem}")

    def to_json(self) -> dict[str, Any]:
        """Everything but the arrays, as JSON-ready data (the arrays are stored beside it)."""
        return {
            "input_shape": list(self.input_shape), "input_scale": self.input_scale,
            "input_mean": list(self.input_mean), "input_std": list(self.input_std),
            "scales": self.scales, "patterns": self.patterns,
            "ops": [{"name": op.name, "kind": op.kind, "inputs": op.inputs, "attrs": op.attrs,
                     "arrays": {k: list(v.shape) for k, v in op.arrays.items()}} for op in self.ops],
        }

    def equals(self, other: "IntGraph") -> bool:
        """Identical structure, attributes, scales and arrays (dtype, shape and every value)."""
        if self.to_json() != other.to_json():
            return False
        return all(a.arrays[k].dtype == b.arrays[k].dtype and np.array_equal(a.arrays[k], b.arrays[k])
                   for a, b in zip(self.ops, other.ops) for k in a.arrays)


def _output_shape(op: IntOp, inputs: list[tuple[int, ...]]) -> tuple[int, ...]:
    source = inputs[0]
    if op.kind == "flatten":
        return (int(np.prod(source)),)
    if op.kind == "linear":
        if source != (op.arrays["weight"].shape[1],):
            raise QuantError(f"op {op.name!r} takes {op.arrays['weight'].shape[1]} features, gets shape {source}")
        return (op.arrays["weight"].shape[0],)
    if op.kind in ("relu",):
        return source
    if op.kind == "add":
        if inputs[0] != inputs[1]:
            raise QuantError(f"op {op.name!r} adds tensors of shapes {inputs[0]} and {inputs[1]}")
        return source
    if len(source) != 3:
        raise QuantError(f"op {op.name!r} ({op.kind}) needs a (C, H, W) input, gets shape {source}")
    channels, height, width = source
    window = op.window
    (kh, kw), (ph, pw) = window.kernel, window.padding
    out_h, out_w = window.output_size(height, width)
    if out_h < 1 or out_w < 1 or ph >= kh or pw >= kw:
        raise QuantError(f"op {op.name!r}: a {kh}x{kw} window (padding {ph},{pw}) does not fit a {height}x{width} input")
    if op.kind == "conv":
        if op.arrays["weight"].shape[1] != channels:
            raise QuantError(f"op {op.name!r} takes {op.arrays['weight'].shape[1]} channels, gets {channels}")
        channels = op.arrays["weight"].shape[0]
    return (channels, out_h, out_w)


def _validate_attrs(op: IntOp) -> None:
    a = op.attrs
    for flag in ("relu", "requant"):
        if flag in a and not isinstance(a[flag], bool):
            raise QuantError(f"op {op.name!r} attribute {flag!r} must be true or false, got {a[flag]!r}")
    for key in ("m", "shift", "m_a", "m_b"):
        if key in a and (not isinstance(a[key], int) or isinstance(a[key], bool)):
            raise QuantError(f"op {op.name!r} attribute {key!r} must be an integer, got {a[key]!r}")

    def positive_ints(*keys: str) -> None:
        for key in keys:
            value = a.get(key)
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
                raise QuantError(f"op {op.name!r} attribute {key!r} must be two positive integers, got {value!r}")

    if op.kind in WINDOWED:
        positive_ints("kernel", "stride")
        padding = a.get("padding", [0, 0])
        if not (isinstance(padding, list) and len(padding) == 2 and all(isinstance(v, int) and v >= 0 for v in padding)):
            raise QuantError(f"op {op.name!r} attribute 'padding' must be two non-negative integers, got {padding!r}")
    if op.weighted:
        weight = op.arrays.get("weight")
        rank = 4 if op.kind == "conv" else 2
        if weight is None or weight.ndim != rank:
            raise QuantError(f"op {op.name!r} weight must have {rank} dimensions")
        cout = weight.shape[0]
        for key, array in op.arrays.items():
            if key != "weight" and array.shape != (cout,):
                raise QuantError(f"op {op.name!r} array {key!r} has shape {array.shape}, expected ({cout},)")
        if op.kind == "conv" and list(weight.shape[2:]) != a.get("kernel"):
            raise QuantError(f"op {op.name!r} kernel {a.get('kernel')} does not match its weight {weight.shape}")
    if op.requant and op.weighted:
        _check_requant(op, op.arrays["m"], op.arrays["shift"])
    if op.kind == "avgpool":
        _check_requant(op, np.array([a.get("m", 0)]), np.array([a.get("shift", 0)]))
    if op.kind == "add":
        _check_requant(op, np.array([a.get("m_a", 0), a.get("m_b", 0)]), np.array([a.get("shift", 0)] * 2))


def _check_requant(op: IntOp, m: np.ndarray, shift: np.ndarray) -> None:
    if (m <= 0).any() or (m >= 2**31).any():
        raise QuantError(f"op {op.name!r} has a requantization mantissa outside (0, 2^31)")
    if (shift < 1).any() or (shift > 62).any():
        raise QuantError(f"op {op.name!r} has a requantization shift outside [1, 62]")
