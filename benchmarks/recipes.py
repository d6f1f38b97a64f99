"""Issue 13's matrix: which levers bring a 16x-sparse model to the dense model's accuracy.

Every recipe trains on the training set less a held-out validation split. Seed 0 chooses (validation accuracy,
int8); seeds 1 and 2, used in no choice, give the test figures (int8 and float, mean and half-range). A recipe
that starts from the dense run (``--init``) or distills from it (``--teacher``) counts that run's epochs too, and
is compared with the dense model trained for the same total epochs (the ``-2x`` rows). Rows already in the CSV
are skipped; runs resume from their checkpoints; ``--workers`` trainings share one GPU.

Compression and index ratio count the prunable layers (all but the first conv), as the budget does.
Cycles: the accelerator's analytic model (``simulate(..., mode="analytic")``) on a 16x16 array (one pixel per
cycle) built for the largest M the recipe's plan uses (the dense model on the dense 16x16 array).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from _common import command, machine, read_csv, write_csv, write_json

COLUMNS = ["model", "recipe", "seed", "epochs_total", "compression", "index_ratio", "array_m", "cycles",
           "val_float", "val_int8", "test_float", "test_int8", "seconds"]
CHOOSE_SEED = 0  # the others (1 and 2 by default) are fresh: used in no choice
SMOOTH = {"label_smoothing": 0.1}
KD = {"teacher": "dense", "distill_temperature": 2.0, "distill_weight": 0.5}
INIT = {"init": "dense", "permute_at": 0.0}
PERM = {"permute": "auto"}
SENS = {"allocate": "sensitivity", "array_m": 32}
ERK = {"allocate": "erk", "array_m": 32}

# name -> settings; "teacher"/"init" = "dense" point at the same model and seed's dense run; "x2" doubles epochs.
RECIPES: dict[str, dict[str, Any]] = {
    "dense": {"pattern": "dense"},
    "uniform": {},
    "all-sens": {**SENS, **KD, **INIT, **PERM, **SMOOTH},
    "all-erk": {**ERK, **KD, **INIT, **PERM, **SMOOTH},
    "dense-2x": {"pattern": "dense", "x2": True},
    "dense-ls-2x": {"pattern": "dense", "x2": True, **SMOOTH},
    "alloc-sens": SENS,
    "alloc-erk": ERK,
    "kd": KD,
    "init": INIT,
    "perm": PERM,
    "ls": SMOOTH,
    "all-sens-cyc": {**SENS, "allocate_cycles": True, **KD, **INIT, **PERM, **SMOOTH},
    "all-32x": {**SENS, "budget": 32.0, "array_m": 64, **KD, **INIT, **PERM, **SMOOTH},
    "dense-ls": {"pattern": "dense", **SMOOTH},
    "uniform-2x": {"x2": True},
}
MODEL_RECIPES = {"vgg16_small": list(RECIPES),
                 "resnet18_small": ["dense", "uniform", "all-sens", "all-erk", "dense-2x", "dense-ls-2x"]}
TARGET_GAP = {"vgg16_small": -0.005, "resnet18_small": -0.010}


def _uses_dense(recipe: str) -> bool:
    return any(RECIPES[recipe].get(key) == "dense" for key in ("teacher", "init"))


def epochs_total(recipe: str, epochs: int) -> int:
    """Training epochs a recipe costs, the dense run it starts from or distills included."""
    return epochs * (2 if RECIPES[recipe].get("x2") else 1) + (epochs if _uses_dense(recipe) else 0)


def run_dir(runs: Path, model: str, recipe: str, seed: int, epochs: int) -> Path:
    return runs / f"{model}-{recipe}-e{epochs}-s{seed}"


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Train one (model, recipe, seed), export it to int8 and measure it (runs in a worker process)."""
    import torch

    from edgesparse.accel.config import AcceleratorConfig
    from edgesparse.accel.plan_cycles import array_for, plan_layer_cycles
    from edgesparse.config import load_config
    from edgesparse.data import load_dataset
    from edgesparse.export_flow import export_run, int8_accuracy
    from edgesparse.sparsity import total_figures
    from edgesparse.sparsity.pruner import first_conv_name
    from edgesparse.train import train, training_split

    torch.set_num_threads(1)
    started = time.perf_counter()
    settings = {k: v for k, v in RECIPES[task["recipe"]].items() if k != "x2"}
    for key in ("teacher", "init"):
        if settings.get(key) == "dense":
            settings[key] = str(run_dir(Path(task["runs"]), task["model"], "dense", task["seed"], task["epochs"]))
    epochs = task["epochs"] * (2 if RECIPES[task["recipe"]].get("x2") else 1)
    config = load_config(model=task["model"], width=task["width"], epochs=epochs, seed=task["seed"],
                         val_split=task["val_split"], train_limit=task["train_limit"],
                         test_limit=task["test_limit"], data_dir=task["data_dir"], **settings)
    out = run_dir(Path(task["runs"]), task["model"], task["recipe"], task["seed"], task["epochs"])
    result = train(config, out, resume=True, progress=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    graph = export_run(out)
    choosing = task["seed"] == CHOOSE_SEED
    data = training_split(config)[1] if choosing else load_dataset(config.dataset, "test", config.data_dir).subset(
        config.test_limit)
    int8 = int8_accuracy(graph, data, batch_size=500, device=device)
    first = first_conv_name(result.model)
    prunable = total_figures([row for row in result.figures if row.name != first])  # the budget's weights
    plan = {row.name: row.pattern for row in result.figures if row.pattern != "dense"}
    array = array_for(plan.values()) if plan else AcceleratorConfig(m=1, n=1)
    cycles = sum(plan_layer_cycles(config.model, config.width, data.classes, data.channels, plan, array).values())
    return {"model": task["model"], "recipe": task["recipe"], "seed": task["seed"],
            "epochs_total": epochs_total(task["recipe"], task["epochs"]), "compression": f"{prunable.compression:.3f}",
            "index_ratio": f"{float(prunable.index_ratio):.5f}", "array_m": array.m, "cycles": cycles,
            "val_float": f"{result.val_accuracy:.4f}", "val_int8": f"{int8:.4f}" if choosing else "",
            "test_float": f"{result.test_accuracy:.4f}", "test_int8": "" if choosing else f"{int8:.4f}",
            "seconds": round(time.perf_counter() - started, 1)}


def _mean_spread(values: list[float]) -> tuple[float, float] | None:
    return (statistics.fmean(values), (max(values) - min(values)) / 2) if values else None


def summarize(rows: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """Per recipe: the choosing seed's validation figures and the fresh seeds' test mean and half-range; then
    per model the choices (best under the 16x budget, best also within uniform 1:16's cycles), their dense
    comparators at the same total epochs, and the allocation criteria compared."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:  # a plan may differ between seeds: keep the worst compression, index and cycles of any seed
        entry = table.setdefault(row["model"], {}).setdefault(row["recipe"], {
            "epochs_total": int(row["epochs_total"]), "compression": float("inf"), "index_ratio": 0.0,
            "array_m": 0, "cycles": 0, "test_int8": [], "test_float": []})
        entry["compression"] = min(entry["compression"], float(row["compression"]))
        entry["index_ratio"] = max(entry["index_ratio"], float(row["index_ratio"]))
        entry["array_m"] = max(entry["array_m"], int(row["array_m"]))
        entry["cycles"] = max(entry["cycles"], int(row["cycles"]))
        if int(row["seed"]) == CHOOSE_SEED:
            entry["val_int8"], entry["val_float"] = float(row["val_int8"]), float(row["val_float"])
        else:
            entry["test_int8"].append(float(row["test_int8"]))
            entry["test_float"].append(float(row["test_float"]))
    for recipes in table.values():
        for entry in recipes.values():
            for key in ("test_int8", "test_float"):
                entry[key] = {"seeds": entry[key], "mean_spread": _mean_spread(entry[key])}
    choices = {}
    for model, recipes in table.items():
        chosen = {r: e for r, e in recipes.items() if "val_int8" in e}
        sparse = {r: e for r, e in chosen.items() if not r.startswith("dense")}
        in_budget = {r: e for r, e in sparse.items() if e["compression"] >= 16 * (1 - 1e-6)
                     and e["index_ratio"] <= 1 / 32 + 1e-6}
        uniform_cycles = recipes.get("uniform", {}).get("cycles")
        picks = {"best_16x": max(in_budget, key=lambda r: in_budget[r]["val_int8"], default=None)}
        fast = {r: e for r, e in in_budget.items() if uniform_cycles is not None and e["cycles"] <= uniform_cycles}
        picks["best_16x_within_uniform_cycles"] = max(fast, key=lambda r: fast[r]["val_int8"], default=None)
        report: dict[str, Any] = {}
        for label, recipe in picks.items():
            if recipe is None:
                continue
            total = recipes[recipe]["epochs_total"]
            dense = {r: e for r, e in chosen.items() if r.startswith("dense") and e["epochs_total"] == total}
            comparator = max(dense, key=lambda r: dense[r]["val_int8"], default=None)
            mine, theirs = recipes[recipe]["test_int8"]["mean_spread"], (
                recipes[comparator]["test_int8"]["mean_spread"] if comparator else None)
            gap = mine[0] - theirs[0] if mine and theirs else None
            report[label] = {"recipe": recipe, "dense_comparator": comparator, "epochs_total": total,
                             "test_int8_gap": gap,
                             "target_gap": TARGET_GAP.get(model), "target_met": None if gap is None or
                             model not in TARGET_GAP else gap >= TARGET_GAP[model]}
        criteria = {r: chosen[r]["val_int8"] for r in ("alloc-sens", "alloc-erk", "all-sens", "all-erk") if r in chosen}
        base = chosen.get("uniform", {}).get("val_int8")
        report["allocation_criteria_val_int8"] = criteria
        report["lever_gain_val_int8_vs_uniform"] = {r: round(e["val_int8"] - base, 4) for r, e in sparse.items()
                                                    if base is not None and r != "uniform"}
        test_base = recipes.get("uniform", {}).get("test_int8", {}).get("mean_spread")
        report["lever_gain_test_int8_vs_uniform"] = {
            r: round(e["test_int8"]["mean_spread"][0] - test_base[0], 4) for r, e in recipes.items()
            if test_base and e["test_int8"]["mean_spread"] and not r.startswith("dense") and r != "uniform"}
        choices[model] = report
    return {"epochs": epochs, "recipes": table, "choices": choices}


def _front(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for model, recipes in summary["recipes"].items():
        best = summary["choices"].get(model, {}).get("best_16x", {}).get("recipe")
        for label, recipe in (("dense", "dense"), ("uniform 1:16", "uniform"), ("allocated 16x", best),
                              ("32x budget", "all-32x")):
            entry = recipes.get(recipe) if recipe else None
            if entry is None or entry["test_int8"]["mean_spread"] is None:
                continue
            mean, spread = entry["test_int8"]["mean_spread"]
            rows.append({"model": model, "point": label, "recipe": recipe, "compression": entry["compression"],
                         "array_m": entry["array_m"], "cycles": entry["cycles"], "test_int8_mean": round(mean, 4),
                         "test_int8_spread": round(spread, 4)})
    return rows


def run_matrix(args: Any) -> None:
    """Run the matrix (resumable; ``args`` from accuracy_patterns.py) and write the CSV, JSON and front."""
    out = args.out if args.out.name != "accuracy_patterns.csv" else args.out.with_name("accuracy_recipes.csv")
    runs = args.runs_dir if args.runs_dir != Path("runs/accuracy_patterns") else Path("runs/recipes")
    rows = read_csv(out)
    done = {(r["model"], r["recipe"], int(r["seed"]), int(r["epochs_total"])) for r in rows}
    seeds = args.seeds
    todo = [(model, recipe, seed) for recipe in RECIPES for model in args.models
            if recipe in MODEL_RECIPES.get(model, RECIPES) for seed in seeds
            if (model, recipe, seed, epochs_total(recipe, args.epochs)) not in done
            and (not args.only or recipe in args.only)]
    if args.only:  # the order given is the priority
        todo.sort(key=lambda key: args.only.index(key[1]))
    started = time.perf_counter()

    def publish() -> None:
        write_csv(out, COLUMNS, rows)
        summary = summarize(rows, args.epochs)
        front = _front(summary)
        if front:
            write_csv(out.with_name("accuracy_front.csv"), list(front[0]), front)
        recorded = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
        commands = [c for c in recorded.get("commands", []) if c != command()] + [command()]
        write_json(out.with_suffix(".json"), {"commands": commands, "machine": machine(),
                                              "device": _device_name(), "width": args.width,
                                              "val_split": args.val_split, "train_limit": args.train_limit,
                                              "test_limit": args.test_limit, **summary})

    def task(model: str, recipe: str, seed: int) -> dict[str, Any]:
        return {"model": model, "recipe": recipe, "seed": seed, "epochs": args.epochs, "width": args.width,
                "val_split": args.val_split, "train_limit": args.train_limit, "test_limit": args.test_limit,
                "runs": str(runs), "data_dir": args.data_dir}

    if args.summarize:  # rewrite the summary of the rows as measured, keeping where and how they were measured
        recorded = json.loads(out.with_suffix(".json").read_text())
        write_csv(out, COLUMNS, rows)
        summary = summarize(rows, args.epochs)
        front = _front(summary)
        write_csv(out.with_name("accuracy_front.csv"), list(front[0]), front)
        keep = {k: v for k, v in recorded.items() if k not in summary}
        write_json(out.with_suffix(".json"), {**keep, **summary})
        print(json.dumps(summary["choices"], indent=2))
        return
    pending: dict[Any, tuple[str, str, int]] = {}
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
        while todo or pending:
            late = args.deadline is not None and time.perf_counter() - started > args.deadline
            finished = {(r["model"], r["recipe"], int(r["seed"])) for r in rows}
            for key in list(todo):
                if late or len(pending) >= args.workers:
                    break
                model, recipe, seed = key
                if _uses_dense(recipe) and (model, "dense", seed) not in finished:
                    continue
                todo.remove(key)
                pending[pool.submit(run_task, task(*key))] = key
            if late:
                todo.clear()
            if not pending:
                break
            complete, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in complete:
                key = pending.pop(future)
                row = future.result()
                rows.append(row)
                publish()
                print(f"{'-'.join(map(str, key))}: val {row['val_float']} / {row['val_int8'] or '-'}, test "
                      f"{row['test_float']} / {row['test_int8'] or '-'} (float / int8), {row['compression']}x, "
                      f"{row['cycles']} cycles, {row['seconds']} s, at {time.perf_counter() - started:.0f} s",
                      flush=True)
    publish()
    print(json.dumps(summarize(rows, args.epochs)["choices"], indent=2))


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
