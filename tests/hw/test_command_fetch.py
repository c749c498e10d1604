"""CommandFetcher: cocotb on Verilator against cocotbext-axi's RAM holding compiled and
random programs (pauses, AXI errors, bad opcodes, bus timeout)."""

from __future__ import annotations

import pytest

from speedllm.hw.command_fetch import CommandFetcher, fetched_layout
from speedllm.ops import isa
from speedllm.sim.runner import run_cocotb


@pytest.mark.sim
@pytest.mark.parametrize("data_width", [64, 128])
def test_command_fetcher(data_width):
    ran = run_cocotb(lambda: CommandFetcher(data_width=data_width),
                     toplevel="command_fetcher", test_module="speedllm.sim.tb_command_fetch",
                     parameters={"data_width": data_width})
    assert ran == 5


def test_fetched_layout_is_the_isa_record():
    layout = fetched_layout()
    assert layout["command"].shape == isa.struct_layout()
    assert layout.size == 8 * isa.COMMAND_BYTES + 32


@pytest.mark.parametrize("kwargs,match", [(dict(data_width=1024), "at most"),
                                          (dict(data_width=48), "data_width"),
                                          (dict(addr_width=8), "addr_width")])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CommandFetcher(**kwargs)
