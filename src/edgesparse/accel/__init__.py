"""The sparse systolic-array accelerator: configuration, mapping, schedule, and its three simulators."""

from edgesparse._lazy import lazy_exports

_HOMES = {
    "AcceleratorConfig": "edgesparse.accel.config",
    "parse_array": "edgesparse.accel.config",
    "LoweredLayer": "edgesparse.accel.mapping",
    "activation_blocks": "edgesparse.accel.mapping",
    "lower": "edgesparse.accel.mapping",
    "LayerSchedule": "edgesparse.accel.schedule",
    "LayerShape": "edgesparse.accel.schedule",
    "fold_cycles": "edgesparse.accel.schedule",
    "schedule_layer": "edgesparse.accel.schedule",
    "MODES": "edgesparse.accel.simulate",
    "LayerResult": "edgesparse.accel.simulate",
    "SimulationResult": "edgesparse.accel.simulate",
    "plan_network": "edgesparse.accel.simulate",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
