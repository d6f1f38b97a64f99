"""Packed-model sizes of VGG16-224 and ResNet50-224 under 1:16 (random weights that follow the pattern).

For each model: export to the integer graph, pack, reload (validating), and report the stored bytes per pattern
and in total against the dense int8 and dense fp32 weights (`edgesparse inspect` gives the per-layer table).

    python benchmarks/packed_sizes.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _common import publish  # noqa: E402

from edgesparse.export_flow import export_random  # noqa: E402
from edgesparse.pack import load_packed, save_packed  # noqa: E402
from edgesparse.pack.inspect import stored_layers, total_stored  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--pattern", default="1:16")
    args = parser.parse_args()

    rows = []
    for name in args.models:
        graph = export_random(name, args.pattern)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{name}.packed"
            file_bytes = save_packed(graph, path)
            layers = stored_layers(load_packed(path))
        for pattern in sorted({layer.pattern for layer in layers}) + [None]:
            total = total_stored(layers, pattern)
            ratios = total.ratios()
            rows.append({"model": f"{name}-224", "layers": pattern or "all",
                         "count": sum(1 for layer in layers if pattern in (None, layer.pattern)),
                         "dense_weights": total.dense_weights, "kept_weights": total.kept_weights,
                         "value_bytes": total.value_bytes, "index_bytes": total.index_bytes,
                         "scale_bytes": total.scale_bytes, "weights_vs_dense": f"{ratios['weights_vs_dense']:.6f}",
                         "index_vs_int8": f"{ratios['index_overhead']:.6f}",
                         "total_vs_int8": f"{ratios['vs_dense_int8']:.6f}",
                         "total_vs_fp32": f"{ratios['vs_dense_fp32']:.6f}", "file_bytes": file_bytes})
    publish("packed_sizes", rows)


if __name__ == "__main__":
    main()
