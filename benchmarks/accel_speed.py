"""How fast the simulators run: fast mode on all of VGG16-224 (checked bit-exact against the integer
reference), analytic mode on VGG16 and ResNet50 together, and the stepped model's rate in PE-cycles per second.

    python benchmarks/accel_speed.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import publish  # noqa: E402

from edgesparse.accel import AcceleratorConfig  # noqa: E402
from edgesparse.accel.simulate import simulate  # noqa: E402
from edgesparse.export_flow import export_random  # noqa: E402
from edgesparse.quant import quantize_input, run_graph  # noqa: E402


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def main() -> None:
    config = AcceleratorConfig(16, 16)
    vgg = export_random("vgg16", "1:16", calibration_images=1)
    resnet = export_random("resnet50", "1:16", calibration_images=1)
    image = quantize_input(vgg, torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    fast, fast_s = timed(lambda: simulate(vgg, config, "fast", image[0]))
    reference, reference_s = timed(lambda: run_graph(vgg, image))
    exact = bool(np.array_equal(fast.output, reference))
    (_, _), analytic_s = timed(lambda: (simulate(vgg, config, "analytic"), simulate(resnet, config, "analytic")))

    small = export_random("vgg16_small", "1:16", in_chans=1, num_classes=10, width=0.25, calibration_images=1)
    small_image = quantize_input(small, torch.randn(1, 1, 32, 32))[0]
    stepped, stepped_s = timed(lambda: simulate(small, config, "stepped", small_image))
    pe_cycles = stepped.total_cycles * config.pes
    rows = [
        {"what": "fast mode, VGG16-224 on 16x16 1:16", "seconds": f"{fast_s:.2f}", "target": "<= 60 s",
         "note": f"bit-exact vs integer reference: {exact} (reference alone {reference_s:.2f} s)"},
        {"what": "analytic mode, VGG16-224 + ResNet50-224", "seconds": f"{analytic_s:.2f}", "target": "<= 1 s",
         "note": f"{fast.total_cycles:,} cycles for VGG16"},
        {"what": "stepped mode, vgg16_small (w 1/4, 32x32) on 16x16 1:16", "seconds": f"{stepped_s:.2f}",
         "target": "", "note": f"{pe_cycles / stepped_s:,.0f} PE-cycles/s ({stepped.total_cycles:,} cycles); "
                               f"outputs equal fast: {bool(np.array_equal(stepped.output, simulate(small, config, 'fast', small_image).output))}"},
    ]
    publish("accel_speed", rows)


if __name__ == "__main__":
    main()
