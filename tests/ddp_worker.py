"""Run by tests/test_train.py under torchrun: train a tiny sparse model with DDP and save this rank's state."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from edgesparse.config import load_config
from edgesparse.train import train

out = Path(sys.argv[1])
config = load_config(model="vgg16_small", width=0.125, dataset="synthetic", epochs=2, batch_size=32,
                     pattern="1:16", importance="taylor", update_every=2, prune_end=0.5, freeze=0.9,
                     channels_last=False)
result = train(config, out / "run", progress=False)
torch.save({"state": result.model.state_dict(), "world": dist.get_world_size()}, out / f"rank{dist.get_rank()}.pt")
dist.destroy_process_group()
