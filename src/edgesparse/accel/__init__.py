"""The sparse systolic-array accelerator: configuration, mapping, schedule, and its three simulators."""

from edgesparse.accel.config import AcceleratorConfig, parse_array
from edgesparse.accel.mapping import LoweredLayer, activation_blocks, lower
from edgesparse.accel.schedule import LayerSchedule, LayerShape, fold_cycles, schedule_layer
from edgesparse.accel.simulate import MODES, LayerResult, SimulationResult, plan_network, simulate

__all__ = ["AcceleratorConfig", "LayerResult", "LayerSchedule", "LayerShape", "LoweredLayer", "MODES",
           "SimulationResult", "activation_blocks", "fold_cycles", "lower", "parse_array", "plan_network",
           "schedule_layer", "simulate"]
