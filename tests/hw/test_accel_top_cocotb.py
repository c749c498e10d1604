"""The whole accelerator top in cocotb (cocotbext-axi RAMs, AXI-Lite host) running a
1-layer stories260K model bit-exact against the interpreter (``sim/tb_accel_top.py``).

The top's Verilog takes ~35 s to convert and its Verilator build 8-10 minutes on this
machine (cached in ``sim_build/`` by the Verilog's hash, so only the first run after an RTL
change pays it). The default test is kept short (fused decode and the bus faults, ~1.5 min
with the build cached, in one :func:`run_cocotb` call); the runs with random RAM stalls
(fused and unfused) are ``slow``.
"""

from __future__ import annotations

import numpy as np
import pytest

from speedllm.golden.checkpoint import load_checkpoint
from speedllm.ops.interpreter import Interpreter
from speedllm.sim.runner import run_cocotb
from speedllm.sim.tb_accel_top import reduced_checkpoint, reduced_program

TB_MODULE = "speedllm.sim.tb_accel_top"
DEFAULT_TESTS = ["test_fused_decode", "test_bus_faults"]
SLOW_TESTS = ["test_unfused_decode_with_pauses", "test_fused_decode_with_pauses"]


def _top():
    from speedllm.hw.accel_top import AcceleratorTop
    return AcceleratorTop()


def test_reduced_model_is_layer_zero(model_path):
    full = load_checkpoint(model_path)
    one = reduced_checkpoint(1)
    assert one.args.n_layers == 1 and one.args.dim == full.args.dim
    for name, w in one.weights.items():
        src = full.weights[name]
        per_layer = src.ndim >= 2 and src.shape[0] == full.args.n_layers
        want = src[:1] if per_layer else src
        np.testing.assert_array_equal(w, want, err_msg=name)
    for fused in (True, False):
        program = reduced_program(fused)
        assert sum(name.startswith("l1.") for name in program.layout) == 0
        assert any(name.startswith("l0.") for name in program.layout)
        logits = Interpreter.from_program(program).step(1, 0)
        assert logits.shape == (full.args.vocab_size,) and np.isfinite(logits).all()
    with pytest.raises(ValueError, match="n_layers"):
        reduced_checkpoint(full.args.n_layers + 1)


@pytest.mark.sim
def test_accel_top_cocotb():
    ran = run_cocotb(_top, toplevel="accel_top", test_module=TB_MODULE,
                     testcase=DEFAULT_TESTS)
    assert ran == len(DEFAULT_TESTS)


@pytest.mark.sim
@pytest.mark.slow
def test_accel_top_cocotb_long():
    ran = run_cocotb(_top, toplevel="accel_top", test_module=TB_MODULE,
                     testcase=SLOW_TESTS)
    assert ran == len(SLOW_TESTS)
