"""Accuracy of a small VGG16 trained from scratch on Fashion-MNIST under each pruning pattern and importance.

Every run uses the same model, epochs, seed and optimizer; only the pattern (and for 1:16 the importance score)
changes. Runs are resumable: a finished row in the CSV is kept, an interrupted run continues from its checkpoint.

    python benchmarks/accuracy_patterns.py --epochs 5          # the committed table
    python benchmarks/accuracy_patterns.py --epochs 1 --train-limit 4096 --out /tmp/quick.csv   # a smoke run

``--recipes`` runs issue 13's matrix instead (:mod:`recipes`): every lever alone and together, on a validation
split for choosing (seed 0) and on two fresh seeds for the test figures, int8 and float.

    python benchmarks/accuracy_patterns.py --recipes --epochs 5 --workers 12      # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _common import RESULTS, command, machine, print_table, read_csv, write_csv, write_json  # noqa: E402

from edgesparse.config import TrainConfig, load_config  # noqa: E402
from edgesparse.sparsity import IMPORTANCE  # noqa: E402
from edgesparse.train import train  # noqa: E402

COLUMNS = ["model", "pattern", "importance", "epochs", "seed", "compression", "test_acc"]
DEFAULT_IMPORTANCE = TrainConfig().importance


def planned_runs() -> list[tuple[str, str]]:
    """(pattern, importance) pairs: every pattern with the default importance, 1:16 with every importance, and
    the baselines with plain magnitude too (the classic unstructured-magnitude and L1 channel criteria)."""
    runs = [("dense", "none")]
    runs += [("1:16", name) for name in IMPORTANCE]
    runs += [(p, DEFAULT_IMPORTANCE) for p in ("1:16/g4", "unstructured", "channel")]
    runs += [(p, "magnitude") for p in ("unstructured", "unstructured-layer", "channel")]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="vgg16_small")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--train-limit", type=int, default=None, help="first N training images only (smoke runs)")
    parser.add_argument("--only", nargs="*", help="run only these PATTERN[,IMPORTANCE] entries")
    parser.add_argument("--out", type=Path, default=RESULTS / "accuracy_patterns.csv")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/accuracy_patterns"))
    parser.add_argument("--recipes", action="store_true", help="issue 13's recipe matrix (see recipes.py)")
    parser.add_argument("--models", nargs="*", default=["vgg16_small", "resnet18_small"], help="with --recipes")
    parser.add_argument("--workers", type=int, default=1, help="with --recipes: concurrent training processes")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2],
                        help="with --recipes: seed 0 chooses (validation), the others test")
    parser.add_argument("--val-split", type=int, default=5000, help="with --recipes: held-out training images")
    parser.add_argument("--test-limit", type=int, default=None, help="with --recipes: first N test images")
    parser.add_argument("--data-dir", default=None, help="with --recipes: folder of the dataset files")
    parser.add_argument("--summarize", action="store_true",
                        help="with --recipes: only rewrite the summary and front of the CSV's rows")
    parser.add_argument("--deadline", type=float, default=None,
                        help="with --recipes: start no run after this many seconds (the CSV keeps what finished)")
    args = parser.parse_args()
    if args.recipes:
        from recipes import run_matrix

        run_matrix(args)
        return

    rows = read_csv(args.out)
    done = {(r["model"], r["pattern"], r["importance"], r["epochs"], r["seed"]) for r in rows}
    for pattern, importance in planned_runs():
        if args.only and pattern not in args.only and f"{pattern},{importance}" not in args.only:
            continue
        key = (args.model, pattern, importance, str(args.epochs), str(args.seed))
        if key in done:
            continue
        config = load_config(model=args.model, width=args.width, epochs=args.epochs, seed=args.seed,
                             pattern=pattern, train_limit=args.train_limit,
                             importance=DEFAULT_IMPORTANCE if importance == "none" else importance)
        tag = f"{args.model}-{pattern.replace(':', 'of').replace('/', '-')}-{importance}-e{args.epochs}-s{args.seed}"
        started = time.perf_counter()
        result = train(config, args.runs_dir / tag, resume=True)
        rows.append({"model": args.model, "pattern": pattern, "importance": importance, "epochs": args.epochs,
                     "seed": args.seed, "compression": f"{result.compression:.2f}",
                     "test_acc": f"{result.test_accuracy:.4f}"})
        write_csv(args.out, COLUMNS, rows)
        print(f"{tag}: test accuracy {result.test_accuracy:.4f} in {time.perf_counter() - started:.0f} s", flush=True)

    print_table(COLUMNS, rows)
    summary = args.out.with_suffix(".json")
    commands = json.loads(summary.read_text()).get("commands", []) if summary.exists() else []
    if command() not in commands:
        commands.append(command())
    write_json(summary, {"commands": commands, "machine": machine(), "rows": rows,
                         "train_limit": args.train_limit, "width": args.width})


if __name__ == "__main__":
    main()
