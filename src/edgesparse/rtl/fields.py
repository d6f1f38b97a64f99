"""Packing named fields into one memory word, low bits first: the one home of the DMA's descriptors, the feeders'
start values and the engine's layer descriptors (each declares its fields and widths; the host writes the word)."""

from __future__ import annotations

from edgesparse.errors import ConfigError


def pack_fields(values: dict[str, int], widths: dict[str, int], what: str, signed: bool = False) -> int:
    """``values`` at ``widths`` (in that dict's order), low bits first; with ``signed``, negative values in two's
    complement. :class:`ConfigError` names a ``what`` field that does not fit."""
    word, offset = 0, 0
    for name, width in widths.items():
        value = values[name]
        if not (-(1 << (width - 1)) if signed else 0) <= value < 1 << width:
            raise ConfigError(f"{what} field {name} = {value!r} does not fit {width} bits")
        word |= (value & ((1 << width) - 1)) << offset
        offset += width
    return word
