"""RopeUnit == intops.rope bit for bit (cocotb on Verilator), ROM and streamed tables."""

from __future__ import annotations

import pytest

from speedllm.hw.rope import RopeUnit
from speedllm.sim.runner import run_cocotb


@pytest.mark.sim
@pytest.mark.parametrize("head_size,seq_len,tables", [(8, 64, "rom"), (48, 16, "stream")])
def test_rope_unit(head_size, seq_len, tables):
    params = {"head_size": head_size, "seq_len": seq_len, "tables": tables}
    ran = run_cocotb(lambda: RopeUnit(**params), toplevel=f"rope_{head_size}_{seq_len}_{tables}",
                     test_module="speedllm.sim.tb_rope", parameters=params)
    assert ran == 3


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kwargs,error", [
    ({"head_size": 7}, ValueError), ({"head_size": 8, "seq_len": 0}, ValueError),
    ({"head_size": 8, "tables": "dram"}, ValueError), ({"head_size": "8"}, TypeError)])
def test_bad_parameters(kwargs, error):
    with pytest.raises(error):
        RopeUnit(**kwargs)
