"""The packed model file (safetensors: values + packed indices + graph) and block packing."""

from edgesparse.pack.blocks import pack_bits, pack_block_weight, unpack_bits, unpack_block_weight
from edgesparse.pack.packed import decode_packed, encode_packed, load_packed, save_packed

__all__ = ["decode_packed", "encode_packed", "load_packed", "pack_bits", "pack_block_weight", "save_packed",
           "unpack_bits", "unpack_block_weight"]
