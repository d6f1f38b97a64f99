"""Shared fixtures: tiny, fast training configs on the synthetic dataset."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

from edgesparse.config import load_config  # noqa: E402


@pytest.fixture
def tiny_config():
    """A few-second run: small VGG at width 1/8 on 512 synthetic images, masks updated often."""
    def make(**overrides):
        values = dict(model="vgg16_small", width=0.125, dataset="synthetic", epochs=2, batch_size=64,
                      lr=0.05, pattern="1:16", importance="taylor", update_every=2, prune_end=0.5, freeze=0.8,
                      channels_last=False)
        values.update(overrides)
        return load_config(**values)
    return make
