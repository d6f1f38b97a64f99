"""The model registry: VGG16, ResNet18 and ResNet50, ImageNet and small-input variants."""

from edgesparse._lazy import lazy_exports

_HOMES = {
    "INPUT_SIZE": "edgesparse.models.registry",
    "MODELS": "edgesparse.models.registry",
    "create_model": "edgesparse.models.registry",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
