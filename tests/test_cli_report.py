"""`speedllm report`: a restricted report (one shape, two boards, a four-point sweep on a
thread pool) writes its Markdown, JSON and stamped figures; bad options fail in one line."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from speedllm import cli
from speedllm.ops.report import build_report, environment


@pytest.fixture(scope="module")
def hw_json(tmp_path_factory):
    # the shape of `speedllm hw-report` output (hw/synth.py report()); counts are arbitrary
    p = tmp_path_factory.mktemp("hw") / "hw.json"
    p.write_text(json.dumps({"xilinx_family": "xc7", "ecp5_device": None, "components": {
        "unit_a": {"xilinx": {"LUT": 900, "FF": 600, "DSP48E1": 10, "RAMB18E1": 1,
                              "RAMB36E1": 2}},
        "unit_b": {"xilinx": {"LUT": 50, "FF": 40, "DSP48E1": 0, "RAMB18E1": 0,
                              "RAMB36E1": 0}, "ecp5": {"fmax_mhz": 120.0}}}}))
    return p


def test_restricted_report(tmp_path, hw_json, monkeypatch):
    import speedllm.ops.report as R
    checked = []

    def check_model(shape, board, progress=None):      # the RTL run has its own test
        checked.append((shape, board))
        rtl = {"tok_per_s": 1234.5, "roofline_fraction": 0.25}
        return {"shape": shape, "board": board, "pos": 256, "rtl_cycles_per_token": 90000.0,
                "model_cycles_per_token": 81000.0, "error": -0.1, "rtl_figures": rtl,
                "classes": {"matvec": {"rtl": 40000.0, "model": 30000.0, "error": -0.25},
                            "fetch": {"rtl": 60.0, "model": None, "error": None}}}
    monkeypatch.setattr(R, "check_model", check_model)
    with ThreadPoolExecutor(max_workers=2) as ex:
        data = build_report(tmp_path, shapes=["stories260K"], boards=["pynq-z2", "zcu104"],
                            ablations=[("stories260K", "pynq-z2")], resources=hw_json,
                            sweep=dict(models=("stories260K",), boards=("pynq-z2",),
                                       lanes=(4, 16), scratchpad_kib=(0.5, 4)), executor=ex)
    md = (tmp_path / "report.md").read_text()
    for name in ("breakdown", "roofline", "ablation", "pareto", "resources"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert f"({name}.png)" in md
    assert environment()["commit"].split("+")[0] in md
    assert checked == list(R.DEFAULT_CHECKS)
    assert "| stories260K | pynq-z2 | 256 | 90,000 | 1234.50 | 0.250 | 81,000 | -10.0% | " \
           "matvec -25.0% |" in md
    assert "estimated" in md and "unit_a" in md and "Sources:" in md
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["sweep"]["points"] == 4 and len(saved["bench"]) == 2
    a = data["ablation"][0]
    assert a["speedup"] == pytest.approx(a["variants"]["naive"]["cycles_per_token"]
                                         / a["variants"]["all"]["cycles_per_token"])


def test_report_without_resources_says_so(tmp_path, monkeypatch):
    import speedllm.ops.report as R
    monkeypatch.setattr(R, "_load_pyplot", lambda: (None, "matplotlib is not installed"))
    build_report(tmp_path, shapes=["stories15M"], boards=["pynq-z2"],
                 ablations=[("stories15M", "pynq-z2")],
                 sweep=dict(models=("stories260K",), boards=("pynq-z2",), lanes=(8,),
                            scratchpad_kib=(4,)), executor=ThreadPoolExecutor(1), checks=())
    md = (tmp_path / "report.md").read_text()
    assert "Not included: no resource report given" in md
    assert "Not included (`--no-rtl-check`)" in md
    assert "Figure not drawn: matplotlib is not installed" in md
    assert not list(tmp_path.glob("*.png"))


def test_missing_resource_file_is_one_line_error(tmp_path, capsys):
    rc = cli.main(["report", "--out", str(tmp_path / "r"), "--resources",
                   str(tmp_path / "nope.json")])
    out, err = capsys.readouterr()
    assert rc == 1 and err.startswith("speedllm: error: ") and err.count("\n") == 1


def test_resource_percentages_follow_the_family(tmp_path):
    """An UltraScale+ hw-report is a share of the ZCU104's xczu7ev, a 7-series one of the
    PYNQ-Z2's xc7z020 (capacities from the board profiles)."""
    from speedllm.ops.boards import get_board
    from speedllm.ops.report import _resource_rows
    counts = {"LUT": 2304, "FF": 100, "DSP": 17, "RAMB18": 2, "RAMB36": 3}
    for family, board in (("xcup", "zcu104"), ("xc7", "pynq-z2")):
        p = tmp_path / f"{family}.json"
        p.write_text(json.dumps({"xilinx_family": family,
                                 "components": {"u": {"xilinx": counts}}}))
        (row,) = _resource_rows(p)
        cap = get_board(board)
        assert row["family"] == family and row["BRAM36"] == 4
        assert row["pct"]["LUT"] == pytest.approx(100 * 2304 / cap.lut)
        assert row["pct"]["DSP"] == pytest.approx(100 * 17 / cap.dsp)
        assert row["pct"]["BRAM36"] == pytest.approx(100 * 4 / cap.bram_blocks)
