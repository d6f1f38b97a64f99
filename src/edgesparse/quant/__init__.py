"""int8 export: BN folding, calibration, fixed-point requantization, the integer graph and its reference executor."""

from edgesparse.quant.export import layer_patterns, calibrate, export_model, float_graph, quantize, run_float
from edgesparse.quant.fixedpoint import quantize_multiplier, requantize, rounding_shift
from edgesparse.quant.graph import IntGraph, IntOp
from edgesparse.quant.reference import dequantize_output, quantize_input, run_graph

__all__ = ["IntGraph", "IntOp", "calibrate", "dequantize_output", "export_model", "float_graph", "layer_patterns",
           "quantize", "quantize_input", "quantize_multiplier", "requantize", "rounding_shift", "run_float",
           "run_graph"]
