"""Training runs: the pattern holds after training, resume is exact, DDP ranks agree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import edgesparse.train as train_module
from edgesparse.sparsity import layer_figures, total_figures, verify_pattern
from edgesparse.trained import load_trained
from edgesparse.train import train


def test_training_with_1of16_ends_on_the_exact_pattern(tmp_path, tiny_config):
    result = train(tiny_config(width=0.25, epochs=4, importance="magnitude"), tmp_path / "run", progress=False)
    checked = verify_pattern(result.model)
    rows = {r.name: r for r in layer_figures(result.model)}
    assert checked and set(checked) == {n for n, r in rows.items() if r.pattern == "1:16"}
    assert rows["features.0"].pattern == "dense"
    sparse = total_figures(list(rows.values()), "1:16")
    for row in [rows[name] for name in checked] + [sparse]:
        assert row.compression == 16.0, row.name
        assert str(row.index_ratio) == "1/32", row.name
    reloaded = load_trained(tmp_path / "run")
    assert torch.equal(reloaded.model.features[3].weight, result.model.features[3].weight)
    assert result.test_accuracy > 0.5  # the synthetic classes are easy; a broken pipeline sits near 0.25


def _states_equal(a: dict, b: dict) -> list[str]:
    return [key for key in a if not torch.equal(a[key], b[key])] + sorted(set(a) ^ set(b))


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, tiny_config, monkeypatch):
    config = tiny_config(epochs=2, checkpoint_every=3, flip=True)
    full = train(config, tmp_path / "full", progress=False)

    real = train_module.iterate_batches
    served = {"train": 0}

    def crashing(*args, **kwargs):
        for batch in real(*args, **kwargs):
            if kwargs.get("shuffle"):
                served["train"] += 1
                if served["train"] > 11:  # mid-epoch 2, two steps after the step-9 checkpoint
                    raise RuntimeError("simulated crash")
            yield batch

    monkeypatch.setattr(train_module, "iterate_batches", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "cut" / "final.pt").exists()
    resumed = train(config, tmp_path / "cut", resume=True, progress=False)

    assert resumed.steps == full.steps == 16
    assert _states_equal(full.model.state_dict(), resumed.model.state_dict()) == []
    masks = [k for k in full.model.state_dict() if k.endswith(".mask")]
    assert masks and all(torch.equal(full.model.state_dict()[k], resumed.model.state_dict()[k]) for k in masks)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def test_resume_refuses_a_changed_config(tmp_path, tiny_config):
    train(tiny_config(epochs=1), tmp_path / "run", progress=False)
    from edgesparse.errors import CheckpointError
    with pytest.raises(CheckpointError, match="pattern: checkpoint '1:16' vs now '2:16'"):
        train(tiny_config(epochs=1, pattern="2:16"), tmp_path / "run", resume=True, progress=False)


def test_damaged_checkpoint_is_reported(tmp_path, tiny_config):
    train(tiny_config(epochs=1), tmp_path / "run", progress=False)
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])
    from edgesparse.errors import CheckpointError
    with pytest.raises(CheckpointError, match="damaged"):
        train(tiny_config(epochs=1), tmp_path / "run", resume=True, progress=False)


@pytest.mark.slow
def test_ddp_ranks_compute_identical_masks_and_weights(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    worker = Path(__file__).with_name("ddp_worker.py")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    str(worker), str(tmp_path)], check=True, env=env, timeout=300, capture_output=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # Each rank's own masks, before rank 0's are broadcast, already agree: the broadcast hides nothing.
    assert ranks[1]["updates"] == ranks[0]["updates"] >= 8  # at start, every 2 steps to 50%, at the freeze
    assert [r["disagreeing"] for r in ranks] == [0, 0]
    a, b = ranks[0]["state"], ranks[1]["state"]
    masks = [k for k in a if k.endswith(".mask")]
    assert len(masks) == 13  # 12 convs and the classifier; the first conv stays dense
    # BatchNorm running statistics are per rank (DDP re-broadcasts rank 0's before each forward): skip them.
    learned = {k: v for k, v in a.items() if "running_" not in k and "num_batches" not in k}
    assert len(learned) > 2 * len(masks)
    assert _states_equal(learned, {k: b[k] for k in learned}) == []
    density = sum(int(a[k].sum()) for k in masks) / sum(a[k].numel() for k in masks)
    assert density < 0.1  # the masks really were recomputed down to the pattern
