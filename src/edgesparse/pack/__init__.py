"""The packed model file (safetensors: values + packed indices + graph) and block packing."""

from edgesparse._lazy import lazy_exports

_HOMES = {
    "pack_bits": "edgesparse.pack.blocks",
    "pack_block_weight": "edgesparse.pack.blocks",
    "unpack_bits": "edgesparse.pack.blocks",
    "unpack_block_weight": "edgesparse.pack.blocks",
    "decode_packed": "edgesparse.pack.packed",
    "encode_packed": "edgesparse.pack.packed",
    "load_packed": "edgesparse.pack.packed",
    "save_packed": "edgesparse.pack.packed",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
