"""Run by tests/test_train.py under torchrun: train a tiny sparse model with DDP and save this rank's state.

Every mask update is watched just before its broadcast from rank 0: ``updates`` counts them and ``disagreeing``
those where this rank's own masks (computed from its own weights and gradients) differed from rank 0's, which the
broadcast would otherwise hide.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from edgesparse.config import load_config
from edgesparse.sparsity.pruner import DynamicPruner
from edgesparse.train import train

out = Path(sys.argv[1])
watch = {"updates": 0, "disagreeing": 0}
broadcast = DynamicPruner._broadcast_masks


def watched_broadcast(self):
    own = [holder.mask.clone() for holder in self.masks.values()]
    broadcast(self)
    watch["updates"] += 1
    watch["disagreeing"] += any(not torch.equal(a, h.mask) for a, h in zip(own, self.masks.values()))


DynamicPruner._broadcast_masks = watched_broadcast
config = load_config(model="vgg16_small", width=0.125, dataset="synthetic", epochs=2, batch_size=32,
                     pattern="1:16", importance="taylor", update_every=2, prune_end=0.5, freeze=0.9,
                     channels_last=False)
result = train(config, out / "run", progress=False)
torch.save({"state": result.model.state_dict(), "world": dist.get_world_size(), **watch},
           out / f"rank{dist.get_rank()}.pt")
dist.destroy_process_group()
