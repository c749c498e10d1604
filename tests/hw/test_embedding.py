"""EmbeddingFetch == intops.embedding bit for bit (cocotb on Verilator)."""

from __future__ import annotations

import pytest

from speedllm.hw.embedding import EmbeddingFetch
from speedllm.sim.runner import run_cocotb


@pytest.mark.sim
@pytest.mark.parametrize("lanes,group_size", [(8, 32), (1, 4)])
def test_embedding_fetch(lanes, group_size):
    params = {"lanes": lanes, "group_size": group_size}
    ran = run_cocotb(lambda: EmbeddingFetch(**params), toplevel=f"embedding_{lanes}x{group_size}",
                     test_module="speedllm.sim.tb_embedding", parameters=params)
    assert ran == 2


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kwargs,error", [
    ({"lanes": 3, "group_size": 32}, ValueError), ({"lanes": 0}, ValueError),
    ({"group_size": "32"}, TypeError)])
def test_bad_parameters(kwargs, error):
    with pytest.raises(error):
        EmbeddingFetch(**kwargs)
