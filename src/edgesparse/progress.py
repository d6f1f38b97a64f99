"""Progress bars for terminals and for logs: every progress bar of edgesparse is made here.

On a terminal a bar redraws in place (tqdm). When its stream is not a terminal (``make demo > log``), redraws
would fill the log, so the bar prints one plain line each time another ``LOG_EVERY_PERCENT`` of the work is done
(or every ``LOG_EVERY_SECONDS`` when the total is unknown), and a last one when it closes.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Iterable

from tqdm import tqdm

LOG_EVERY_PERCENT = 5
LOG_EVERY_SECONDS = 30.0


class _LogLines(tqdm):
    """A tqdm bar that writes a new line per refresh (at most one per count) instead of redrawing in place."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._logged_n: float | None = None
        super().__init__(*args, **kwargs)
        self.sp = None  # tqdm's in-place printer: unused, and without it close() redraws nothing

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is None and self.n == self._logged_n:
            return True
        if msg != "":
            self.fp.write((self.__str__() if msg is None else msg) + "\n")
            self.fp.flush()
            self._logged_n = self.n
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to erase: earlier lines stay in the log."""

    def close(self) -> None:
        if not self.disable:
            self.display()  # the final count, unless already printed
        super().close()


def progress_bar(iterable: Iterable[Any] | None = None, *, total: float | None = None, disable: bool = False,
                 file: Any = None, **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand up to ``total``) that stays readable in a log file."""
    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    if disable or (isatty is not None and isatty()):
        return tqdm(iterable, total=total, disable=disable, file=stream, **kwargs)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if total:
        steps = {"miniters": max(1, math.ceil(total * LOG_EVERY_PERCENT / 100)), "mininterval": 0.0}
    else:
        steps = {"mininterval": LOG_EVERY_SECONDS}
    kwargs.pop("dynamic_ncols", None)
    return _LogLines(iterable, total=total, file=stream, maxinterval=math.inf, ascii=True, ncols=100,
                     **steps, **kwargs)
