"""The energy model: every board has sourced coefficients; energy is static power x time plus
dynamic terms that are linear and monotone in their activity counts."""

import dataclasses

import pytest

from speedllm.ops.boards import board_names, get_board
from speedllm.ops.cyclemodel import AcceleratorConfig, estimate_graph
from speedllm.ops.energy import (ENERGY_PROFILES, Activity, count_activity,
                                 energy_coefficients, estimate_energy)
from speedllm.ops.fusion import FusionConfig, fuse
from speedllm.ops.graph import MODEL_SHAPES, build_graph

BASE = Activity(seconds=0.02, dram_bytes=16_000_000, macs=15_000_000, bram_accesses=3_000_000)


@pytest.mark.parametrize("board", board_names())
def test_every_board_has_sourced_coefficients(board):
    c = energy_coefficients(board)
    assert c.board == board == energy_coefficients(get_board(board)).board
    for f in ("static_w", "dram_pj_per_bit", "mac_pj", "bram_pj_per_access"):
        assert getattr(c, f) > 0
        assert len(c.sources[f]) > 20
    assert "static_w" in c.assumptions           # no board measured yet
    assert set(ENERGY_PROFILES) == set(board_names())


@pytest.mark.parametrize("board", board_names())
def test_terms_sum_and_static_is_power_times_time(board):
    c = energy_coefficients(board)
    e = estimate_energy(BASE, board)
    assert e.static_j == pytest.approx(c.static_w * BASE.seconds)
    assert e.j_per_token == pytest.approx(e.static_j + e.dram_j + e.mac_j + e.bram_j)
    assert e.tokens_per_j == pytest.approx(1 / e.j_per_token)
    assert e.average_power_w == pytest.approx(e.j_per_token / BASE.seconds)
    assert e.average_power_w > c.static_w
    assert "estimated" in e.label and "estimated" in e.to_dict()["label"]


@pytest.mark.parametrize("field", ["seconds", "dram_bytes", "macs", "bram_accesses"])
def test_energy_is_monotone_in_each_count(field):
    lo = estimate_energy(BASE, "pynq-z2").j_per_token
    more = dataclasses.replace(BASE, **{field: getattr(BASE, field) * 2})
    assert estimate_energy(more, "pynq-z2").j_per_token > lo


def test_time_only_moves_the_static_term():
    a = estimate_energy(BASE, "zcu104")
    b = estimate_energy(dataclasses.replace(BASE, seconds=BASE.seconds * 3), "zcu104")
    assert b.static_j == pytest.approx(3 * a.static_j)
    assert b.dynamic_j == pytest.approx(a.dynamic_j)


def test_dynamic_terms_are_additive():
    half = Activity(BASE.seconds, BASE.dram_bytes // 2, BASE.macs // 2, BASE.bram_accesses // 2)
    whole = estimate_energy(BASE, "kv260").dynamic_j
    assert 2 * estimate_energy(half, "kv260").dynamic_j == pytest.approx(whole)


def test_dram_term_follows_the_memory_technology():
    # same bytes: HBM2 (u280) costs less per byte than DDR4 (zcu104), which costs less than DDR3
    per_byte = {b: estimate_energy(BASE, b).dram_j / BASE.dram_bytes
                for b in ("u280", "zcu104", "pynq-z2")}
    assert per_byte["u280"] < per_byte["zcu104"] < per_byte["pynq-z2"]


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        Activity(seconds=0.1, dram_bytes=-1, macs=0, bram_accesses=0)
    with pytest.raises(ValueError):
        estimate_energy(Activity(0, 1, 1, 1), "pynq-z2")
    with pytest.raises(ValueError, match="unknown board"):
        energy_coefficients("no-such-board")


@pytest.fixture(scope="module")
def step():
    g = fuse(build_graph(MODEL_SHAPES["stories15M"], 10), FusionConfig())
    return g, estimate_graph(g, "pynq-z2", AcceleratorConfig())


def test_count_activity_takes_work_from_the_graph(step):
    g, est = step
    a = count_activity(g, cycles_per_token=est.cycles_per_token, fmax_mhz=est.fmax_mhz,
                       dram_bytes=est.dram_bytes_per_token, lanes=8)
    assert a.macs == g.macs_per_token
    assert a.dram_bytes == est.dram_bytes_per_token
    assert a.seconds == pytest.approx(est.cycles_per_token / (est.fmax_mhz * 1e6))
    # every DRAM byte passes the read FIFOs (in and out): at least that many 64-bit words
    assert a.bram_accesses >= 2 * est.dram_bytes_per_token // 8


def test_count_activity_scratchpad_and_dram_bytes(step):
    g, est = step
    kw = dict(cycles_per_token=est.cycles_per_token, fmax_mhz=est.fmax_mhz, lanes=8)
    on_chip = count_activity(g, dram_bytes=est.dram_bytes_per_token, memory="reuse", **kw)
    spilled = count_activity(g, dram_bytes=est.dram_bytes_per_token, memory="dram", **kw)
    assert spilled.bram_accesses < on_chip.bram_accesses     # no scratchpad traffic
    more = count_activity(g, dram_bytes=2 * est.dram_bytes_per_token, **kw)
    assert more.bram_accesses > on_chip.bram_accesses
