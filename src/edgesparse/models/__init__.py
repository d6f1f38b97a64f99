"""The model registry: VGG16, ResNet18 and ResNet50, ImageNet and small-input variants."""

from edgesparse.models.registry import INPUT_SIZE, MODELS, create_model

__all__ = ["INPUT_SIZE", "MODELS", "create_model"]
