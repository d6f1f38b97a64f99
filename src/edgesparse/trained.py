"""Reading a trained run back: the model with its masks and patterns, from a run folder, final.pt or checkpoint.pt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from edgesparse.checkpoint import load_checkpoint
from edgesparse.config import TrainConfig
from edgesparse.errors import CheckpointError
from edgesparse.models import create_model
from edgesparse.sparsity import attach_mask, verify_pattern

_MASK_SUFFIX = ".parametrizations.weight.0.mask"


@dataclass
class TrainedModel:
    """A trained model (masks attached, eval mode), its config and the checkpoint it came from."""

    model: nn.Module
    config: TrainConfig
    path: Path
    test_accuracy: float | None


def load_trained(path: str | Path) -> TrainedModel:
    """Rebuild the model of a run and load its weights and masks; the masks are verified against their pattern."""
    path = Path(path)
    if path.is_dir():
        path = path / "final.pt" if (path / "final.pt").exists() else path / "checkpoint.pt"
    state = load_checkpoint(path)
    for key in ("config", "model", "model_args"):
        if key not in state:
            raise CheckpointError(f"{path} lacks {key!r}: not a training checkpoint")
    config = TrainConfig(**state["config"])
    model = create_model(**state["model_args"])
    patterns = state.get("patterns") or state.get("pruner", {}).get("patterns", {})
    weights = state["model"]
    for key in weights:
        if key.endswith(_MASK_SUFFIX):
            layer = key[: -len(_MASK_SUFFIX)]
            if layer not in patterns:
                raise CheckpointError(f"{path}: layer {layer!r} has a mask but no recorded pattern")
            attach_mask(model.get_submodule(layer), patterns[layer])
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit model {state['model_args']}: {error}") from None
    if "patterns" in state:  # a finished run: its masks must follow their final patterns exactly
        verify_pattern(model)
    model.eval()
    return TrainedModel(model, config, path, state.get("test_acc"))
