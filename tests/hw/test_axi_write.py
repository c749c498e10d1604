"""AxiWriteMaster: cocotb on Verilator against cocotbext-axi's RAM (pauses, errors)."""

from __future__ import annotations

import pytest

from speedllm.hw.axi_write import AxiWriteMaster
from speedllm.sim.runner import run_cocotb

# Constructors that raise leave objects Amaranth reports as "never used".
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


@pytest.mark.sim
@pytest.mark.parametrize("data_width,max_burst_beats,max_outstanding",
                         [(64, 256, 4), (128, 16, 1)])
def test_axi_write_master(data_width, max_burst_beats, max_outstanding):
    params = dict(data_width=data_width, max_burst_beats=max_burst_beats,
                  max_outstanding=max_outstanding, timeout_cycles=100)
    ran = run_cocotb(lambda: AxiWriteMaster(**params), toplevel="axi_write_master",
                     test_module="speedllm.sim.tb_axi_write", parameters=params)
    assert ran == 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(data_width=48), "data_width"), (dict(addr_width=70), "addr_width"),
    (dict(max_burst_beats=0), "max_burst_beats"), (dict(max_outstanding=0), "max_outstanding"),
    (dict(data_depth=1), "data_depth"), (dict(timeout_cycles=1), "timeout_cycles"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AxiWriteMaster(**kwargs)
