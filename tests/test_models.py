"""The model registry: topologies, parameter counts, input sizes."""

import pytest
import torch

from edgesparse.errors import ConfigError
from edgesparse.models import INPUT_SIZE, MODELS, create_model


@pytest.mark.parametrize("name, params", [("vgg16", 138_361_768), ("resnet50", 25_557_032), ("resnet18", 11_689_512)])
def test_imagenet_topologies_match_the_reference_parameter_counts(name, params):
    # torchvision's vgg16_bn less its 4,224 conv biases (BN follows every conv); resnet50/18 exactly.
    assert sum(p.numel() for p in create_model(name).parameters()) == params


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_runs_on_its_input_size(name):
    size = INPUT_SIZE[name]
    model = create_model(name, num_classes=7, in_chans=1, width=0.125).eval()
    assert model(torch.randn(1, 1, size, size)).shape == (1, 7)


def test_bad_model_arguments_are_named():
    with pytest.raises(ConfigError, match="unknown model 'vgg19'.*vgg16"):
        create_model("vgg19")
    with pytest.raises(ConfigError, match="width"):
        create_model("vgg16_small", width=0)
    with pytest.raises(ConfigError, match="in_chans"):
        create_model("vgg16_small", in_chans=0)
