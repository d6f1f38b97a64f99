"""int8 export: BN folding, calibration, fixed-point requantization, the integer graph and its reference executor."""

from edgesparse._lazy import lazy_exports

_HOMES = {
    "layer_patterns": "edgesparse.quant.export",
    "calibrate": "edgesparse.quant.export",
    "export_model": "edgesparse.quant.export",
    "float_graph": "edgesparse.quant.export",
    "quantize": "edgesparse.quant.export",
    "run_float": "edgesparse.quant.export",
    "quantize_multiplier": "edgesparse.quant.fixedpoint",
    "requantize": "edgesparse.quant.fixedpoint",
    "rounding_shift": "edgesparse.quant.fixedpoint",
    "IntGraph": "edgesparse.quant.graph",
    "IntOp": "edgesparse.quant.graph",
    "dequantize_output": "edgesparse.quant.reference",
    "quantize_input": "edgesparse.quant.reference",
    "run_graph": "edgesparse.quant.reference",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
