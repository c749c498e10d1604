"""AxiReadMaster: cocotb on Verilator against cocotbext-axi's RAM (pauses, errors)."""

from __future__ import annotations

import pytest

from speedllm.hw.axi_read import AxiReadMaster
from speedllm.sim.runner import run_cocotb

# Constructors that raise leave objects Amaranth reports as "never used".
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


@pytest.mark.sim
@pytest.mark.parametrize("data_width,max_burst_beats,max_outstanding",
                         [(64, 256, 4), (128, 16, 1)])
def test_axi_read_master(data_width, max_burst_beats, max_outstanding):
    params = dict(data_width=data_width, max_burst_beats=max_burst_beats,
                  max_outstanding=max_outstanding, timeout_cycles=100)
    ran = run_cocotb(lambda: AxiReadMaster(**params), toplevel="axi_read_master",
                     test_module="speedllm.sim.tb_axi_read", parameters=params)
    assert ran == 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(data_width=48), "data_width"), (dict(data_width=16), "data_width"),
    (dict(addr_width=8), "addr_width"), (dict(max_burst_beats=257), "max_burst_beats"),
    (dict(max_outstanding=0), "max_outstanding"), (dict(data_depth=1), "data_depth"),
    (dict(length_width=0), "length_width"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AxiReadMaster(**kwargs)
