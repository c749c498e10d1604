"""The design-space sweep: executors agree, Pareto fronts are non-dominated, fit flags and
the scratchpad spill rule follow the board and the memory plan."""

import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace

import pytest

from speedllm.ops.boards import get_board
from speedllm.ops.fusion import FusionConfig, fuse
from speedllm.ops.graph import MODEL_SHAPES, OpKind, build_graph
from speedllm.ops.memplan import plan_memory
from speedllm.ops.sweep import (SerialExecutor, SweepPoint, bram_blocks, evaluate_point, grid,
                                pareto_front, plot_pareto, run_sweep)

POINTS = grid(models=("stories260K",), boards=("pynq-z2", "ulx3s-85f", "zcu104"),
              lanes=(4, 16, 64, 256), scratchpad_kib=(0.5, 4), attention_lanes=(4, 16))

MATVECS_260K = sum(n.kind in (OpKind.MATVEC, OpKind.CLASSIFIER)
                   for n in fuse(build_graph(MODEL_SHAPES["stories260K"])).nodes)


@pytest.fixture(scope="module")
def results():
    return run_sweep(POINTS, executor=SerialExecutor())


def test_serial_thread_and_process_executors_agree(results):
    with ThreadPoolExecutor(max_workers=2) as ex:
        threaded = run_sweep(POINTS, executor=ex)
    with ProcessPoolExecutor(max_workers=2) as ex:
        processes = run_sweep(POINTS, executor=ex)
    assert threaded == results
    assert processes == results
    assert [r.point for r in results] == POINTS


def test_default_executor_is_a_process_pool():
    pts = POINTS[:4]
    assert run_sweep(pts, max_workers=2) == [evaluate_point(p) for p in pts]


@pytest.mark.parametrize("cost", ["dsp", "bram"])
def test_pareto_front_is_non_dominated_and_covers_the_rest(results, cost):
    for board in ("pynq-z2", "ulx3s-85f", "zcu104"):
        rs = [r for r in results if r.point.board == board]
        front = pareto_front(rs, cost)
        assert front
        for a in front:
            assert a.fits
            for b in rs:
                if b.fits and b is not a:
                    dominates = (b.tok_s >= a.tok_s and getattr(b, cost) <= getattr(a, cost)
                                 and (b.tok_s > a.tok_s or getattr(b, cost) < getattr(a, cost)))
                    assert not dominates, (a.point, b.point)
        ids = {id(r) for r in front}
        for b in rs:
            if b.fits and id(b) not in ids:
                assert any(a.tok_s >= b.tok_s and getattr(a, cost) <= getattr(b, cost)
                           for a in front), b.point
        costs = [getattr(r, cost) for r in front]
        assert costs == sorted(costs)
        assert [r.tok_s for r in front] == sorted(r.tok_s for r in front)
    everything = pareto_front(results, cost, fitting_only=False)
    assert max(r.tok_s for r in everything) == max(r.tok_s for r in results)


def test_fit_flags_follow_the_board(results):
    assert any(not r.fits for r in results)      # 256 lanes overflow the ECP5's multipliers
    for r in results:
        b = get_board(r.point.board)
        assert r.fits_detail == {"dsp": r.dsp <= b.dsp, "lut": r.lut <= b.lut,
                                 "ff": r.ff <= b.ff, "bram": r.bram <= b.bram_blocks}
        assert r.fits == all(r.fits_detail.values())
        assert r.bram == sum(r.buffers.values())


def test_resources_grow_with_lanes(results):
    by = {(r.point.board, r.point.lanes, r.point.scratchpad_kib, r.point.attention_lanes): r
          for r in results}
    for (board, lanes, spad, att), r in by.items():
        bigger = by.get((board, lanes * 4, spad, att))
        if bigger:
            assert bigger.dsp > r.dsp and bigger.lut > r.lut and bigger.ff > r.ff
            # more lanes never cost more than their deeper adder tree: log2(4) = 2 more
            # fill cycles per matvec command
            assert bigger.cycles_per_token <= r.cycles_per_token + 2 * MATVECS_260K


def test_scratchpad_spill_rule(results):
    g = fuse(build_graph(MODEL_SHAPES["stories260K"]), FusionConfig())
    need = plan_memory(g, reuse=True).scratchpad_bytes
    for r in results:
        assert r.scratchpad_needed_bytes == need
        on_chip = need <= r.point.scratchpad_kib * 1024
        assert r.memory == ("reuse" if on_chip else "dram")
    p = SweepPoint("stories260K", "pynq-z2", 16, 4.0)
    small = evaluate_point(replace(p, scratchpad_kib=need / 1024 / 2))
    big = evaluate_point(p)
    assert small.memory == "dram" and big.memory == "reuse"
    assert small.tok_s <= big.tok_s
    assert small.dram_bytes_per_token > big.dram_bytes_per_token
    separate = evaluate_point(replace(p, reuse=False, scratchpad_kib=64))
    assert separate.memory == "separate"
    assert separate.scratchpad_needed_bytes == plan_memory(g, reuse=False).scratchpad_bytes


def test_bram_blocks_packing():
    for kbits in (18, 36):
        for width, depth in [(1, 1), (64, 100), (16 * 8, 36), (32, 3000), (72, 512), (500, 7)]:
            n = bram_blocks(width, depth, kbits)
            assert n >= 1 and n * kbits * 1024 >= width * depth
            assert bram_blocks(width, depth * 2, kbits) >= n
            assert bram_blocks(width + 1, depth, kbits) >= n
    assert bram_blocks(0, 10, 36) == 0


def test_plot_without_matplotlib_says_so(monkeypatch, tmp_path, capsys, results):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot_pareto(results, str(tmp_path / "p.png")) is None
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_cli_prints_an_analytical_table(capsys):
    from speedllm.ops.sweep import main
    assert main(["--model", "stories260K", "--board", "pynq-z2", "--lanes", "8", "16",
                 "--scratchpad-kib", "4", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "analytical" in out
    assert len([l for l in out.splitlines() if l.startswith("stories260K")]) == 2
