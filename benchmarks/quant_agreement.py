"""int8 integer reference vs the float model on the Fashion-MNIST test set, for the trained 1:16 model.

Uses the 1:16 run of ``accuracy_patterns.py`` (trained here first if it is missing), exports it (BN folded, 8
calibration batches of training images), packs and reloads the file, then runs all 10,000 test images through
both the float model and the integer reference; then the accelerator's fast mode runs 16 of them and every
layer's output is compared with the integer reference.

    python benchmarks/quant_agreement.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import publish  # noqa: E402
from edgesparse.progress import progress_bar  # noqa: E402

from edgesparse.accel import AcceleratorConfig  # noqa: E402
from edgesparse.accel.simulate import simulate  # noqa: E402
from edgesparse.config import load_config  # noqa: E402
from edgesparse.data import iterate_batches, load_dataset  # noqa: E402
from edgesparse.export_flow import export_run  # noqa: E402
from edgesparse.pack import load_packed, save_packed  # noqa: E402
from edgesparse.quant import dequantize_output, quantize_input, run_graph  # noqa: E402
from edgesparse.train import train  # noqa: E402
from edgesparse.trained import load_trained  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="trained run (default: the benchmark's 1:16 run)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--calibration-batches", type=int, default=8)
    args = parser.parse_args()

    config = load_config(pattern="1:16", epochs=args.epochs)
    run = args.run or Path("runs/accuracy_patterns") / f"vgg16_small-1of16-{config.importance}-e{args.epochs}-s0"
    if not (run / "final.pt").exists():
        train(config, run, resume=True)
    trained = load_trained(run)
    started = time.perf_counter()
    graph = export_run(run, args.calibration_batches)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.packed"
        file_bytes = save_packed(graph, path)
        graph = load_packed(path)
    export_seconds = time.perf_counter() - started

    test = load_dataset(trained.config.dataset, "test")
    float_right = int_right = agree = 0
    started = time.perf_counter()
    for images, labels in progress_bar(iterate_batches(test, 500, shuffle=False, drop_last=False),
                                       total=len(test) // 500, desc="float vs integer", unit="batch"):
        with torch.no_grad():
            float_pred = trained.model(images).argmax(1).numpy()
        int_pred = dequantize_output(graph, run_graph(graph, quantize_input(graph, images))).argmax(1)
        float_right += int((float_pred == labels.numpy()).sum())
        int_right += int((int_pred == labels.numpy()).sum())
        agree += int((float_pred == int_pred).sum())
    count = len(test)
    int_ref_seconds = time.perf_counter() - started
    accel_images = 16  # the accelerator (fast mode, 16x16 1:16) on every layer of the trained model
    images, _ = next(iterate_batches(test, accel_images, shuffle=False))
    accel_exact = True
    for image in quantize_input(graph, images):
        reference = run_graph(graph, image[None], keep=True)
        fast = simulate(graph, AcceleratorConfig(16, 16), "fast", image, keep=True)
        accel_exact &= all(np.array_equal(fast.tensors[op.name], reference[op.name]) for op in graph.ops)
    rows = [{"model": f"{trained.config.model} w{trained.config.width} {trained.config.pattern}",
             "images": count, "float_acc": f"{float_right / count:.4f}", "int8_acc": f"{int_right / count:.4f}",
             "drop_pt": f"{100 * (float_right - int_right) / count:.2f}", "top1_agreement": f"{agree / count:.4f}",
             "packed_bytes": file_bytes, "export_s": f"{export_seconds:.1f}",
             "int_ref_s": f"{int_ref_seconds:.1f}",
             "accel_bit_exact": f"{accel_exact} ({accel_images} images, every layer)"}]
    publish("quant_agreement", rows, run=str(run), targets="agreement >= 0.99, drop <= 0.5 pt")


if __name__ == "__main__":
    main()
