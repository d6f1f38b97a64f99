"""The report end to end: measured sections, Markdown and HTML, and the HTML rendered by headless Chromium."""

import io
import json
import re
import shutil
import subprocess
from contextlib import redirect_stdout

import pytest

from edgesparse.cli import main


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory):
    """A tiny sparse and dense run on the synthetic set, exported, and reported on a small sweep."""
    root = tmp_path_factory.mktemp("report")
    for name, pattern in (("sparse", "1:16"), ("dense", "dense")):
        assert main(["train", "--out", str(root / name), "--dataset", "synthetic", "--width", "0.25", "--epochs",
                     "1", "--batch-size", "64", "--pattern", pattern, "--no-progress"]) == 0
    assert main(["export", str(root / "sparse"), "-o", str(root / "model.packed"), "--calibration-batches", "2"]) == 0
    with redirect_stdout(io.StringIO()) as text:
        assert main(["report", *_report_args(root, "report")]) == 0
    (root / "report" / "stdout.txt").write_text(text.getvalue())
    return root / "report"


def _report_args(root, out):
    return [str(root / "sparse"), str(root / "model.packed"), "--dense-run", str(root / "dense"), "-o",
            str(root / out), "--array", "8x8", "--networks", "vgg16_small", "--sweep-model", "vgg16_small",
            "--sweep-arrays", "4x4", "8x8", "--sweep-patterns", "dense", "1:4", "1:16", "--test-images", "200",
            "--no-progress"]


def test_report_json_holds_the_printed_figures(report_folder, capsys):
    """The same report with --json: every figure of the printed summary, as printed."""
    assert main(["report", *_report_args(report_folder.parent, "report_json"), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    text = (report_folder / "stdout.txt").read_text()
    assert f"{100 * figures['accuracy_sparse']:.2f}%" in text and f"{100 * figures['int8_accuracy']:.2f}%" in text
    assert f"{figures['compression']:.2f}x fewer weights" in text
    assert f"{figures['index_overhead']:.5f} of dense int8" in text
    assert f"{figures['demo_model']}: {figures['demo_fps']:,.0f} FPS, {figures['demo_gops_per_w']:,.0f} GOPS/W" in text
    for net in figures["networks"]:
        assert f"{net['model']}: {net['fps']:.2f} FPS ({net['speedup_vs_dense']:.2f}x dense)" in text
    assert figures["files"]["html"].endswith("report.html")


def test_report_sections_hold_measured_numbers(report_folder):
    data = json.loads((report_folder / "report.json").read_text())
    assert data["bit_exact"]["exact"] is True and data["bit_exact"]["images"] >= 1
    assert data["packed"]["pruned_layers_compression"] == pytest.approx(16.0)
    assert data["packed"]["index_overhead"] == pytest.approx(1 / 32)
    assert set(data["runs"]) == {"sparse", "dense"} and data["runs"]["dense"]["compression"] == pytest.approx(1.0)
    (network,) = data["networks"]
    assert network["speedup"] > 1 and network["sparse"]["fps"] > network["dense"]["fps"]
    assert len(data["sweep"]) == 2 * 3 and any(p["pareto"] for p in data["sweep"])
    statuses = {row["status"] for row in data["comparison"] if not row["ours"]}
    assert any("derived" in s for s in statuses) and any("quoted" in s for s in statuses)
    assert all(row["source"] for row in data["energy_table"]["rows"])


def test_the_printed_summary_matches_the_report(report_folder, capsys):
    data = json.loads((report_folder / "report.json").read_text())
    from edgesparse.report import format_summary

    summary = format_summary(data["summary"])
    assert summary in (report_folder / "report.md").read_text()
    fps = f"{data['demo_figures']['fps']:,.0f} FPS"
    assert fps in summary and f"{data['demo_figures']['gops_per_dsp']:.2f} GOPS/DSP" in summary


def test_markdown_links_every_plot(report_folder):
    text = (report_folder / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", text)
    assert len(links) == 8  # accuracy, demo and one network's layers, its cycles vs bound, energy, accuracy vs cycles,
    # comparison, sweep
    for link in links:
        assert (report_folder / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_renders_in_headless_chromium_with_every_plot_loaded(report_folder):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is missing: `make test` installs the Debian package"
    html = (report_folder / "report.html").read_text()
    images = html.count("<img ")
    assert images == 8 and "src='http" not in html and "src=\"http" not in html  # self-contained
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", (report_folder / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, "chromium returned no DOM"
    assert f'data-plots-loaded="{images}"' in body.group(0) and 'data-plots-broken="0"' in body.group(0), body.group(0)


def test_every_plot_of_the_report_is_readable(report_folder, monkeypatch):
    """The report's own plots on its own data: every text inside its figure, tick labels on every axis."""
    import matplotlib.pyplot as plt

    from edgesparse.report import plots
    from edgesparse.report.render import sections

    problems, seen = [], []

    def check(figure):
        seen.append(figure)
        problems.extend(plots.layout_problems(figure))
        plt.close(figure)
        return b""

    monkeypatch.setattr(plots, "_png", check)
    sections(json.loads((report_folder / "report.json").read_text()))
    assert len(seen) == 8 and problems == []
