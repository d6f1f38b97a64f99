"""The engine's pipeline depths in cycles: the single home of every latency the RTL builds and the cycle model
counts (pure constants, so the model needs no Amaranth). Each RTL component documents its stages where it builds
them; the cycle model (:mod:`edgesparse.accel.schedule`, :func:`edgesparse.accel.array.clock_layer`) adds them.
"""

PRODUCT_STAGES = 2
"""The pipelined PE's registers from an activation's arrival to its product's add (select, product)."""

FEED_LATENCY = 3
"""Cycles from the controller's decision to the array's edge: a fold's weight word read in cycle t enters the top
of the array in t + 3, and a row's feeder started in cycle t puts its first vector on the left edge in t + 3 (its
walkers' address, the block RAM's registered read, then the feeder's output register, so that no block RAM output
shares a cycle with a PE's select). The cycle model times the array in controller cycles; the array's physical
events come this much later."""

SUM_REGISTER = 1
"""A final sum leaves the array in cycle t (the cycle model's exit: the bottom PE latches it at the edge ending t) and
is on the output stage's input in cycle t + 1."""

REQUANT_LATENCY = 7
"""A :class:`~edgesparse.rtl.ppu.Requantizer`'s input in cycle t is on its output in t + 7."""

ADD_LATENCY = 7
"""A :class:`~edgesparse.rtl.ppu.ResidualAdd`'s input in cycle t is on its output in t + 7."""

AVGPOOL_LATENCY = 1 + REQUANT_LATENCY
"""From a map's last pixel at a :class:`~edgesparse.rtl.ppu.GlobalAvgPool` to its average: the sum's register,
then a requantizer."""

RESIDUAL_LATENCY = 1 + ADD_LATENCY
"""What a residual add puts between a pixel's requantized bytes and the rest of the output stream: the residual
buffer's registered read of the operand, then the :class:`~edgesparse.rtl.ppu.ResidualAdd`."""

MAXPOOL_LATENCY = 3
"""From the pixel that completes a window at a :class:`~edgesparse.rtl.ppu.MaxPool` to its maximum."""

ACCUMULATE_LATENCY = 2
"""The output stage's accumulation over row folds: the memory read beside the sum's register, then the adder's."""

OUTPUT_LATENCY = ACCUMULATE_LATENCY + REQUANT_LATENCY + 1
"""From the last column's (C - 1) final sum of a pixel at the output stage (cycle t) to the cycle its C bytes are
written (t + 10; in the buffer from t + 11): accumulation, requantization, the write's address register."""

POOLED_LATENCY = OUTPUT_LATENCY + MAXPOOL_LATENCY
"""The same for a pooled layer, from the last column's sum of the pixel that completes a pooling window."""
