"""speedllm.ops.model_check: the model's classes fold into the RTL's counter classes, the
errors follow from the two figures, and on the real RTL (stories260K) the model stays within
its tolerance."""

import sys
import types

import pytest

from speedllm.errors import InputError
from speedllm.ops.bench import ABLATION_VARIANTS, bench, measure_cycles
from speedllm.ops.cyclemodel import AcceleratorConfig
from speedllm.ops.model_check import RTL_CLASS, TOLERANCE, check_model, format_check


def _stand_in_rtl(monkeypatch, scale):
    """RTL stand-in: the model's cycles times ``scale``, matvec classes already folded and
    a ``fetch`` class the model does not have."""
    def measure(program, board, *, steps=1, pos=0, stream=True):
        m = measure_cycles(program, board, pos=pos, config=AcceleratorConfig(stream=stream))
        by = {}
        for k, v in m.cycles_by_class.items():
            by[RTL_CLASS.get(k, k)] = by.get(RTL_CLASS.get(k, k), 0.0) + scale * v
        by["fetch"] = 60.0
        return {"cycles_per_token": scale * m.cycles_per_token + 60.0,
                "cycles_by_command": by, "dram_bytes_per_token": m.dram_bytes_per_token,
                "sim_cycles_per_s": 1e6, "notes": ["stand-in"]}
    monkeypatch.setitem(sys.modules, "speedllm.host.rtl_cycles",
                        types.SimpleNamespace(measure=measure))


@pytest.mark.parametrize("scale", [1.0, 1.25])
def test_errors_follow_from_the_two_figures(monkeypatch, scale):
    _stand_in_rtl(monkeypatch, scale)
    c = check_model("stories260K", "pynq-z2", pos=5)
    model = bench("stories260K", "pynq-z2", pos=5)
    assert c["model_cycles_per_token"] == model["cycles_per_token"]
    assert c["rtl_cycles_per_token"] == pytest.approx(scale * model["cycles_per_token"] + 60)
    assert c["error"] == pytest.approx(c["model_cycles_per_token"]
                                       / c["rtl_cycles_per_token"] - 1)
    assert c["within_tolerance"] == (abs(c["error"]) <= TOLERANCE)
    assert c["within_tolerance"] == (scale == 1.0)
    assert "qkv" not in c["classes"] and "w13" not in c["classes"]
    assert c["classes"]["matvec"]["error"] == pytest.approx(1 / scale - 1)
    assert c["classes"]["fetch"] == {"rtl": 60.0, "model": None, "error": None}
    text = format_check(c)
    assert "matvec" in text and ("within 10%" if scale == 1.0 else "OUTSIDE 10%") in text


def test_rtl_lane_counts_are_fixed():
    with pytest.raises(InputError, match="8 MatVec lanes and 4 attention lanes"):
        check_model("stories260K", "pynq-z2", lanes=16)


@pytest.mark.sim
@pytest.mark.parametrize("variant", ["all", "naive"])
def test_model_within_tolerance_of_the_real_rtl(variant):
    """The whole top in Verilator (the harness the rtl backend tests build): one step of
    the fused program with streaming, and of the naive one (unfused, activations in DRAM,
    one burst in flight)."""
    v = {x.name: x for x in ABLATION_VARIANTS}[variant]
    c = check_model("stories260K", "pynq-z2", pos=40, variant=v)
    assert c["rtl_cycles_per_token"] > 10_000
    assert abs(c["error"]) <= TOLERANCE, format_check(c)
    assert c["variant"] == variant
    for cls in ("matvec", "attention", "classifier"):
        assert abs(c["classes"][cls]["error"]) <= TOLERANCE, format_check(c)
