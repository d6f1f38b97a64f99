"""Progress bars stay readable in a log: one line every few percent when the stream is not a terminal."""

import io
from pathlib import Path

import pytest

import edgesparse
from edgesparse.progress import LOG_EVERY_PERCENT, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_in_a_log_prints_a_line_every_few_percent():
    log = io.StringIO()
    bar = progress_bar(total=1000, desc="train", unit="step", file=log, dynamic_ncols=True)
    for step in range(1000):
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}", refresh=False)
        if step == 499:
            bar.write("epoch 1/2: test accuracy 0.5", file=log)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and "epoch 1/2: test accuracy 0.5" in lines
    bars = [line for line in lines if line.startswith("train:")]
    assert len(bars) == 100 // LOG_EVERY_PERCENT + 1  # 0 %, then every 5 %
    assert bars[0].startswith("train:   0%") and bars[-1].startswith("train: 100%") and "1000/1000" in bars[-1]


def test_an_iterable_without_a_length_is_logged_by_time_and_at_the_end():
    log = io.StringIO()
    assert sum(progress_bar(iter(range(50)), desc="x", file=log)) == sum(range(50))
    assert log.getvalue().splitlines() == [line for line in log.getvalue().splitlines() if line.startswith("x:")]
    assert len(log.getvalue().splitlines()) == 2 and "50it" in log.getvalue()


def test_a_terminal_gets_the_redrawn_bar():
    screen = _Terminal()
    for _ in progress_bar(range(1000), desc="x", file=screen, mininterval=0):
        pass
    assert "\r" in screen.getvalue()


def _tqdm_users() -> list[Path]:
    root = Path(edgesparse.__file__).parent
    return sorted(p for p in root.rglob("*.py") if "tqdm" in p.read_text() and p.name != "progress.py")


def test_every_progress_bar_is_made_by_the_one_helper():
    assert _tqdm_users() == []
