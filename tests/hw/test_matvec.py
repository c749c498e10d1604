"""MatVec engine: elaboration checks, the DRAM layout helpers, and the cocotb testbench
(:mod:`speedllm.sim.tb_matvec`) on Verilator for three engine configurations.

The three builds share the component's 1,000 random matvecs (10,000 under
``SPEEDLLM_SIM_LONG=1``) and each runs the corners, empty-command and throughput tests."""

from __future__ import annotations

import numpy as np
import pytest

from speedllm.golden import formats
from speedllm.hw.matvec_layout import (accumulator_widths, image_words, scale_image,
                                       weight_image)

# share of the component's 1,000 (10,000 long) random matvecs each build runs
RANDOM_SHARE = {"l8": 0.5, "l8_split": 0.25, "l4_gather": 0.25}

CONFIGS = {
    # 8 lanes, 64-bit weight beats, one mantissa per scale beat, full-size shapes
    "l8": dict(lanes=8, group_size=32, max_cols=768, max_rows=768, weight_beat_bits=64,
               scales_per_beat=1, x_lanes=1),
    # 128-bit beats split into two 8-lane vectors; 64-bit scale beats; 2 x values a beat
    "l8_split": dict(lanes=8, group_size=32, max_cols=200, max_rows=16,
                     weight_beat_bits=128, scales_per_beat=4, x_lanes=2),
    # one beat per group (a mantissa every cycle), 16-bit beats gathered into 4 lanes
    "l4_gather": dict(lanes=4, group_size=4, max_cols=180, max_rows=16,
                      weight_beat_bits=16, scales_per_beat=2, x_lanes=4),
}


def _engine(cfg):
    from speedllm.hw.matvec import MatVecEngine
    return MatVecEngine(**cfg)


@pytest.mark.sim
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matvec_rtl(name):
    from speedllm.sim.runner import run_cocotb
    cfg = CONFIGS[name]
    tests = ["test_random", "test_corners", "test_empty_commands", "test_throughput"]
    params = dict(cfg, random_share=RANDOM_SHARE[name])
    if name == "l8":
        tests.append("test_full_size")
        params["full_shapes"] = [[768, 288]]
        params["long_full_shapes"] = [[288, 768], [768, 768]]
    ran = run_cocotb(lambda: _engine(cfg), toplevel=f"matvec_{name}",
                     test_module="speedllm.sim.tb_matvec", parameters=params,
                     testcase=tests)
    assert ran == len(tests)


def test_parameter_checks():
    from speedllm.hw.matvec import MatVecEngine
    with pytest.raises(ValueError, match="power of two"):
        MatVecEngine(lanes=6)
    with pytest.raises(ValueError, match="multiple of lanes"):
        MatVecEngine(lanes=16, group_size=8)
    with pytest.raises(ValueError, match="must divide"):
        MatVecEngine(lanes=4, group_size=4, weight_beat_bits=64)
    with pytest.raises(TypeError):
        MatVecEngine(max_cols=1.5)


def test_widths_hold_extreme_sums():
    """The adder widths hold the largest group and row sums the golden model can form."""
    gs, groups = 32, 24
    w = accumulator_widths(8, gs, groups)
    cols = gs * groups
    q = np.full((1, cols), -128, dtype=np.int8)
    m = np.full((1, groups), 0xFFFF, dtype=np.uint16)
    qm = formats.QuantizedMatrix(q=q, scale_m=m, scale_exp=0, cols=cols, group_size=gs)
    x = np.full(cols, formats.X_MIN, dtype=np.int16)
    acc = formats.matvec_group_sums(qm, x)
    t = int((acc * m.astype(np.int64)).sum())
    assert int(acc.max()) <= (1 << (w["group"] - 1)) - 1
    assert t <= (1 << (w["row"] - 1)) - 1
    assert t > (1 << (w["row"] - 2)) - 1           # and not needlessly wide


def test_dram_images_round_trip():
    rng = np.random.default_rng(3)
    qm = formats.quantize_matrix(rng.standard_normal((5, 65)), 32)
    wi = weight_image(qm, 8)
    assert wi.shape == (5 * 96 // 8, 8)
    assert np.array_equal(wi.view(np.int8).reshape(5, 96), qm.q)
    words = image_words(wi)
    assert (words[0] & 0xFF) == int(qm.q[0, 0]) & 0xFF
    si = scale_image(qm, 4)
    assert si.shape == (4, 4)                      # 15 mantissas + one zero of padding
    assert np.array_equal(si.reshape(-1)[:15], qm.scale_m.reshape(-1))
    assert si.reshape(-1)[15] == 0
    assert (image_words(si)[0] >> 16) & 0xFFFF == int(qm.scale_m[0, 1])
