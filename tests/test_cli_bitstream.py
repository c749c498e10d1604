# amaranth: UnusedElaboratable=no
"""`speedllm bitstream` and `speedllm flash`: folders, messages, exit codes and the off-board
error paths; the default design (the accelerator top) written as a PYNQ-Z2 project; the ECP5
time limit; the ID check of `flash` on PYNQ's simulated device. ~60 s on a busy machine
(one Verilog conversion of the accelerator top, ~20-50 s); the real ECP5 build through the
CLI is @slow (dma_copy, ~2-4 min)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from speedllm import cli
from speedllm.bitstreams.targets import TARGETS


@pytest.fixture(autouse=True)
def commands(monkeypatch):
    """The two commands, whether or not the lead has added them to cli.COMMANDS yet."""
    from speedllm.commands import bitstream, flash
    monkeypatch.setitem(cli.COMMANDS, "bitstream", ("bitstream", bitstream.HELP))
    monkeypatch.setitem(cli.COMMANDS, "flash", ("flash", flash.HELP))


def run_cli(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("speedllm: error: "), err
    return lines[0]


# ---- bitstream ---------------------------------------------------------------------------
def test_vivado_target_without_vivado_writes_the_project(capsys, tmp_path, monkeypatch):
    import speedllm.bitstreams.vivado as vivado
    monkeypatch.setattr(vivado, "vivado_available", lambda: None)
    out = tmp_path / "pynq"
    rc, stdout, err = run_cli(capsys, "bitstream", "--target", "pynq-z2", "--out", str(out),
                              "--top", "dma_copy")
    assert rc == 0, err
    assert "Vivado is not installed" in stdout and "stopped before synthesis" in stdout
    manifest = json.loads((out / "target.json").read_text())
    assert manifest["part"] == TARGETS["pynq-z2"].part
    for name in manifest["files"]:
        assert (out / name).is_file()
    assert not list(out.glob("*.bit")) and not list(out.glob("*.hwh"))
    # Our own folder may be written again without --force.
    rc, _, err = run_cli(capsys, "bitstream", "--target", "pynq-z2", "--out", str(out),
                         "--top", "dma_copy")
    assert rc == 0, err


def test_refuses_a_foreign_non_empty_folder(capsys, tmp_path, monkeypatch):
    import speedllm.bitstreams.vivado as vivado
    monkeypatch.setattr(vivado, "vivado_available", lambda: None)
    (tmp_path / "precious.txt").write_text("keep me")
    rc, _, err = run_cli(capsys, "bitstream", "--target", "kv260", "--out", str(tmp_path),
                         "--top", "dma_copy")
    assert rc == 1
    assert "not empty" in one_error_line(err) and "--force" in err
    assert not (tmp_path / "build.tcl").exists()
    rc, _, err = run_cli(capsys, "bitstream", "--target", "kv260", "--out", str(tmp_path),
                         "--force", "--top", "dma_copy")
    assert rc == 0, err
    assert (tmp_path / "build.tcl").is_file()
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_no_run_and_default_out_dir(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = run_cli(capsys, "bitstream", "--target", "zcu104", "--no-run",
                              "--top", "dma_copy")
    assert rc == 0, err
    folder = tmp_path / "build" / "bitstreams" / "zcu104"
    assert (folder / "build.sh").is_file() and "--no-run" in stdout
    assert TARGETS["zcu104"].part in (folder / "build.tcl").read_text()


def test_default_design_is_the_accelerator_on_four_hp_ports(capsys, tmp_path, monkeypatch):
    """What `make bitstream TARGET=pynq-z2` does: the real top's complete project."""
    import speedllm.bitstreams.vivado as vivado
    from speedllm.bitstreams.targets import DEFAULT_TOP, bus_ports, make_top
    from speedllm.commands import bitstream
    monkeypatch.setattr(vivado, "vivado_available", lambda: None)
    parser = __import__("argparse").ArgumentParser()
    bitstream.add_arguments(parser)
    assert parser.parse_args(["--target", "pynq-z2"]).top == DEFAULT_TOP == "accel"
    out = tmp_path / "pynq"
    rc, stdout, err = run_cli(capsys, "bitstream", "--target", "pynq-z2", "--out", str(out))
    assert rc == 0, err
    manifest = json.loads((out / "target.json").read_text())
    for name in manifest["files"]:
        assert (out / name).is_file()
    top = make_top("accel", "pynq-z2")
    masters = [p.name for p in bus_ports(top) if p.kind == "axi_master"]
    assert sorted(m["port"] for m in manifest["masters"]) == sorted(masters)
    assert [g["hp"] for g in manifest["hp_ports"]] == list(range(vivado.HP_PORTS))
    assert [g["masters"] for g in manifest["hp_ports"]] == [list(g) for g in
                                                            vivado.ACCEL_HP_GROUPS]
    core = (out / f"{vivado.CORE_MODULE}.v").read_text()
    assert f"module {vivado.CORE_MODULE}(" in core.replace(" (", "(")
    assert all(f"m_{n}__araddr" in core for n in ("cmd", "rd0", "rd1", "w", "s", "att"))
    assert all(f"m_{n}__awaddr" in core for n in ("wr0", "kv"))
    assert (out / "build.tcl").read_text() == vivado.render_build_tcl(
        top, TARGETS["pynq-z2"], stem=manifest["bit"][:-4])


def test_ecp5_time_limit_is_one_error_line(capsys, tmp_path):
    rc, stdout, err = run_cli(capsys, "bitstream", "--target", "ulx3s-85f", "--top", "dma_copy",
                              "--out", str(tmp_path), "--timeout", "1", "--no-cache")
    assert rc == 1
    assert "did not finish within 1 s" in one_error_line(err)
    assert not list(tmp_path.glob("*.bit"))
    rc, _, err = run_cli(capsys, "bitstream", "--target", "ulx3s-85f", "--out", str(tmp_path),
                         "--timeout", "0")
    assert rc == 1 and "--timeout must be positive" in one_error_line(err)


@pytest.mark.parametrize("top,argv,clock,router", [
    ("accel", [], 25.0, "router2"),                       # what routes (measured ~40 MHz)
    ("dma_copy", [], None, None),                         # the board profile's 100 MHz
    ("accel", ["--clock", "37.5", "--router", "router1"], 37.5, "router1"),
])
def test_ecp5_clock_and_router_defaults_per_top(capsys, tmp_path, monkeypatch, top, argv,
                                                 clock, router):
    import speedllm.bitstreams.ecp5 as ecp5
    seen = {}

    def build_ecp5(design, out, *, name, fabric_mhz, router, **kw):   # no 30-minute build
        design._MustUse__silence = True
        seen.update(name=name, clock=fabric_mhz, router=router)
        util = {k: {"used": 1, "available": 2} for k in ("LUT4", "FF", "DP16KD", "MULT18")}
        return {"fmax_mhz": 40.0, "constraint_mhz": fabric_mhz or 100.0, "timing_met": True,
                "utilization": util, "bit": f"{name}.bit"}
    monkeypatch.setattr(ecp5, "build_ecp5", build_ecp5)
    rc, stdout, _ = run_cli(capsys, "bitstream", "--target", "ulx3s-85f", "--top", top,
                            "--out", str(tmp_path), *argv)
    assert rc == 0 and seen == {"name": f"{top}_ulx3s_85f", "clock": clock, "router": router}
    assert "bitstream: Fmax 40.00 MHz" in stdout


def test_ecp5_clock_the_pll_cannot_make_is_one_error_line(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "bitstream", "--target", "ulx3s-85f", "--top", "dma_copy",
                         "--out", str(tmp_path), "--clock", "40")
    assert rc == 1
    assert "--clock 40: no EHXPLLL setting makes exactly 40" in one_error_line(err)
    assert not list(tmp_path.glob("*.bit"))


def test_unknown_target_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bitstream", "--target", "arty"])
    assert e.value.code == 2


@pytest.mark.slow
def test_ecp5_build_prints_fmax(capsys, tmp_path):
    rc, stdout, err = run_cli(capsys, "bitstream", "--target", "ulx3s-85f",
                              "--top", "dma_copy", "--out", str(tmp_path))
    assert rc == 0, err
    summary = json.loads(next(tmp_path.glob("*.summary.json")).read_text())
    assert f"Fmax {summary['fmax_mhz']:.2f} MHz" in stdout
    assert (tmp_path / summary["bit"]).stat().st_size > 10_000


# ---- flash -------------------------------------------------------------------------------
def test_flash_missing_bit(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "flash", str(tmp_path / "none.bit"), "--target", "pynq-z2")
    assert rc == 1 and "no such bitstream file" in one_error_line(err)


def test_flash_missing_hwh(capsys, tmp_path):
    bit = tmp_path / "overlay.bit"
    bit.write_bytes(b"\0")
    rc, _, err = run_cli(capsys, "flash", str(bit), "--target", "kv260")
    assert rc == 1 and "overlay.hwh" in one_error_line(err)


def test_flash_off_board_has_no_pynq_device(tmp_path):
    """In a fresh process (no simulated device registered), as a user on a PC runs it."""
    bit = tmp_path / "overlay.bit"
    bit.write_bytes(b"\0")
    bit.with_suffix(".hwh").write_text("<stub/>")
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys; from speedllm import cli; "
         "cli.COMMANDS['flash'] = ('flash', 'x'); sys.exit(cli.main(sys.argv[1:]))",
         "flash", str(bit), "--target", "pynq-z2"],
        capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no PYNQ device found" in one_error_line(proc.stderr)


def test_flash_ulx3s_without_openfpgaloader(capsys, tmp_path, monkeypatch):
    import speedllm.commands.flash as flash
    monkeypatch.setattr(flash.shutil, "which", lambda name: None)
    bit = tmp_path / "ulx3s.bit"
    bit.write_bytes(b"\0")
    rc, _, err = run_cli(capsys, "flash", str(bit), "--target", "ulx3s-85f")
    assert rc == 1 and "openFPGALoader is not installed" in one_error_line(err)


def test_flash_ulx3s_runs_openfpgaloader(capsys, tmp_path, monkeypatch):
    """A stand-in openFPGALoader records its arguments: -b ulx3s and the file."""
    import speedllm.commands.flash as flash
    record = tmp_path / "args.txt"
    tool = tmp_path / "openFPGALoader"
    tool.write_text(f'#!/bin/sh\necho "$@" > {record}\n')
    tool.chmod(0o755)
    monkeypatch.setattr(flash.shutil, "which", lambda name: str(tool))
    bit = tmp_path / "ulx3s.bit"
    bit.write_bytes(b"\0")
    rc, _, err = run_cli(capsys, "flash", str(bit), "--target", "ulx3s-85f")
    assert rc == 0, err
    assert record.read_text().split() == ["-b", "ulx3s", str(bit)]


def test_flash_overlay_reads_the_id_register(tmp_path):
    """On PYNQ's simulated device: the overlay loads from its .hwh, hw_id is checked."""
    from speedllm.commands.flash import flash_overlay
    from speedllm.errors import AcceleratorError
    from speedllm.host.hwh import HwhLayout, write_hwh
    from speedllm.host.sim_device import RecordingBus, SimulatedDevice
    from speedllm.hw.accel_regs import ACCEL_REGMAP, HW_ID
    layout = HwhLayout()
    hw_id_addr = layout.ctrl_base + ACCEL_REGMAP.offsets()["hw_id"]
    bus = RecordingBus({hw_id_addr: HW_ID})
    device = SimulatedDevice.activate(bus, layout)
    bit = tmp_path / "speedllm.bit"
    bit.write_bytes(b"\0")
    write_hwh(bit.with_suffix(".hwh"), layout=layout)
    result = flash_overlay(bit, device)
    assert result["hw_id"] == HW_ID
    assert ("read", hw_id_addr, HW_ID) in bus.transactions
    bus.responses[hw_id_addr] = HW_ID ^ 0xFFFF_0000          # wrong magic
    with pytest.raises(AcceleratorError, match="wrong magic"):
        flash_overlay(bit, device)
