"""RTL generated from Python (Amaranth HDL): the sparse PE, the array, the fold unit; Verilog export, co-simulation
against the cycle-accurate simulator, and synthesis for resource counts."""
