"""Vivado project scripts for the Zynq boards (PYNQ-Z2, KV260, ZCU104).

:func:`write_vivado_project` writes, into one folder, everything a user with Vivado needs
to build the overlay with one command (``./build.sh``):

``speedllm_core.v``
    The design's Verilog (Amaranth ``verilog.convert``; ports ``clk``, ``rst``,
    ``s_axil__awaddr``, ``m_axi_rd__araddr``, ...).
``speedllm_top.v``
    A wrapper with Vivado's AXI naming (``s_axil_awaddr``, ``aclk``, active-low
    ``aresetn``) and the module parameters ``C_M_AXI_DDR_BASE``/``C_M_AXI_DDR_RANGE`` that
    the host driver reads from the ``.hwh``.
``build.tcl``
    (1) packages the wrapper as IP ``speedllm:accel:speedllm_top:1.0``
    (:data:`speedllm.host.hwh.ACCEL_VLNV`, the VLNV the driver binds) with explicit AXI
    bus interfaces, a 64 KiB register block and the clock/reset association;
    (2) creates the project (part, and the board part when its board files are installed),
    a block design with the PS (``processing_system7`` / ``zynq_ultra_ps_e`` with board
    presets), FCLK0 / PL0 at the board profile's fabric clock, a ``proc_sys_reset``, the
    AXI-Lite port on M_AXI_GP0 / M_AXI_HPM0_FPD through a SmartConnect, the AXI masters
    on the four HP ports (S_AXI_HP<i> / S_AXI_HP<i>_FPD), one SmartConnect per HP port
    merging the masters grouped onto it (:func:`hp_port_groups`), and the address map
    (control window at the target's ``control_base``; every master's DDR window on its HP
    port's DDR segment; written to ``address_map.txt``);
    (3) synthesis, implementation, ``write_bitstream``, utilisation and timing reports, and
    copies ``<stem>.bit`` and ``<stem>.hwh`` (the block design's hardware handoff, same stem,
    as PYNQ expects) next to the scripts.
``build.sh``
    ``vivado -mode batch -source build.tcl`` from the folder.
``target.json``
    What was generated: target, part, VLNV, control window, ports, file names.

Nothing here runs Vivado; :func:`vivado_available` says whether it could.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from speedllm.host.hwh import ACCEL_INSTANCE, ACCEL_VLNV

from .targets import BusPort, Target, bus_ports, extra_ports, get_target

__all__ = ["write_vivado_project", "render_wrapper", "render_build_tcl", "vivado_available",
           "hp_port_groups", "CORE_MODULE", "TOP_MODULE", "BD_NAME", "AXI_SIGNALS",
           "HP_PORTS", "ACCEL_HP_GROUPS"]

CORE_MODULE = "speedllm_core"       # the Amaranth design
TOP_MODULE = ACCEL_VLNV.split(":")[2]   # the packaged IP's module: speedllm_top
BD_NAME = "speedllm_bd"
HP_PORTS = 4                        # S_AXI_HP0..3 (Zynq-7000) / S_AXI_HP0..3_FPD (MPSoC)

#: The accelerator top's eight masters on the four HP ports. Decode is bound by the weight
#: stream, so ``m_w`` has HP0 to itself; its companion streams (group scales ``m_s``, and
#: the command fetch ``m_cmd``, a few beats per command) share HP1; the activation and
#: K/V-cache reads (``m_rd0``, ``m_rd1``, ``m_att``) share HP2; both writers (results
#: ``m_wr0``, KV-cache rows ``m_kv``) share HP3, the only write traffic.
ACCEL_HP_GROUPS = (("m_w",), ("m_s", "m_cmd"), ("m_rd0", "m_rd1", "m_att"),
                   ("m_wr0", "m_kv"))

# Our member name -> the AXI logical port name of Vivado's aximm_rtl abstraction.
AXI_SIGNALS = {m: m.upper() for m in (
    "awid", "awaddr", "awlen", "awsize", "awburst", "awcache", "awprot", "awvalid", "awready",
    "wdata", "wstrb", "wlast", "wvalid", "wready", "bid", "bresp", "bvalid", "bready",
    "arid", "araddr", "arlen", "arsize", "arburst", "arcache", "arprot", "arvalid", "arready",
    "rid", "rdata", "rresp", "rlast", "rvalid", "rready")}

# PS names per family: IP, clock/reset pins, control master, HP slave ports and settings.
_PS = {
    "ps7": dict(
        ip="xilinx.com:ip:processing_system7", cell="processing_system7_0",
        rule="xilinx.com:bd_rule:processing_system7",
        preset='make_external "FIXED_IO, DDR" apply_board_preset $preset '
               'Master Disable Slave Disable',
        fclk="FCLK_CLK0", fresetn="FCLK_RESET0_N", data_space="Data",
        gp="M_AXI_GP0", gp_clk="M_AXI_GP0_ACLK",
        hp="S_AXI_HP{i}", hp_clk="S_AXI_HP{i}_ACLK", hp_widths=(32, 64),
        ddr_seg="S_AXI_HP{i}/HP{i}_DDR_LOWOCM",
        config=lambda mhz, hps: [("PCW_FPGA0_PERIPHERAL_FREQMHZ", f"{mhz:g}"),
                                 ("PCW_USE_M_AXI_GP0", "1")]
        + [kv for i, w in hps for kv in ((f"PCW_USE_S_AXI_HP{i}", "1"),
                                         (f"PCW_S_AXI_HP{i}_DATA_WIDTH", str(w)))]),
    "psu": dict(
        ip="xilinx.com:ip:zynq_ultra_ps_e", cell="zynq_ultra_ps_e_0",
        rule="xilinx.com:bd_rule:zynq_ultra_ps_e",
        preset="apply_board_preset $preset",
        fclk="pl_clk0", fresetn="pl_resetn0", data_space="Data",
        gp="M_AXI_HPM0_FPD", gp_clk="maxihpm0_fpd_aclk",
        hp="S_AXI_HP{i}_FPD", hp_clk="saxihp{i}_fpd_aclk", hp_widths=(32, 64, 128),
        ddr_seg="SAXIGP{gp}/HP{i}_DDR_LOW",
        config=lambda mhz, hps: [("PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ", f"{mhz:g}"),
                                 ("PSU__USE__M_AXI_GP0", "1"), ("PSU__MAXIGP0__DATA_WIDTH", "32"),
                                 ("PSU__USE__M_AXI_GP1", "0"), ("PSU__USE__M_AXI_GP2", "0")]
        + [kv for i, w in hps for kv in ((f"PSU__USE__S_AXI_GP{i + 2}", "1"),
                                         (f"PSU__SAXIGP{i + 2}__DATA_WIDTH", str(w)))]),
}


def vivado_available() -> str | None:
    """The path of ``vivado`` on PATH, or None."""
    return shutil.which("vivado")


def hp_port_groups(masters: list[BusPort]) -> list[tuple[int, list[BusPort]]]:
    """Which AXI masters share which HP port: ``[(hp_index, [masters]), ...]``.

    Up to :data:`HP_PORTS` masters get one HP port each, in signature order. More masters
    than ports: when their names are those of :data:`ACCEL_HP_GROUPS` (the accelerator
    top), that grouping; otherwise round robin (master ``k`` on port ``k % 4``). Each HP
    port's SmartConnect takes its group on ``S00_AXI``, ``S01_AXI``, ... in the order given.
    """
    if len(masters) <= HP_PORTS:
        return [(i, [m]) for i, m in enumerate(masters)]
    by_name = {m.name: m for m in masters}
    known = {n for group in ACCEL_HP_GROUPS for n in group}
    if set(by_name) <= known:
        groups = [[by_name[n] for n in group if n in by_name] for group in ACCEL_HP_GROUPS]
    else:
        groups = [masters[k::HP_PORTS] for k in range(HP_PORTS)]
    return [(i, g) for i, g in enumerate(groups) if g]


# ---- Verilog wrapper ----------------------------------------------------------------------
def render_wrapper(component: wiring.Component, target: Target) -> str:
    """``speedllm_top``: Vivado-style port names around ``speedllm_core``."""
    ports = bus_ports(component)
    decls = ["    input  wire aclk", "    input  wire aresetn"]
    conns = ["        .clk(aclk)", "        .rst(~aresetn)"]
    for p in ports:
        for member, width, direction in p.signals:
            outer, inner = f"{p.name}_{member}", f"{p.name}__{member}"
            rng = f"[{width - 1}:0] " if width > 1 else ""
            decls.append(f"    {'input ' if direction == 'in' else 'output'} wire {rng}{outer}")
            conns.append(f"        .{inner}({outer})")
    for name, width, direction in extra_ports(component):
        rng = f"[{width - 1}:0] " if width > 1 else ""
        decls.append(f"    {'input ' if direction == 'in' else 'output'} wire {rng}{name}")
        conns.append(f"        .{name}({name})")
    return "\n".join([
        f"// Generated by speedllm.bitstreams.vivado for target {target.name}. Do not edit.",
        f"// {TOP_MODULE}: AXI ports named <bus>_<signal> for Vivado; the design is "
        f"{CORE_MODULE}.",
        f"module {TOP_MODULE} #(",
        f"    parameter [31:0] C_M_AXI_DDR_BASE  = 32'h{target.ddr_base:08X},",
        f"    parameter [31:0] C_M_AXI_DDR_RANGE = 32'h{target.ddr_range:08X}",
        ") (",
        ",\n".join(decls),
        ");",
        f"    {CORE_MODULE} core (",
        ",\n".join(conns),
        "    );",
        "endmodule",
        ""])


# ---- Tcl ---------------------------------------------------------------------------------
def _braced(items) -> str:
    return "{" + " ".join(str(i) for i in items) + "}"


def _package_ip_tcl(ports: list[BusPort], control_range: int) -> list[str]:
    v, lib, name, ver = ACCEL_VLNV.split(":")
    out = [
        "# ---- 1. package the design as IP " + ACCEL_VLNV,
        "create_project -force speedllm_ip [file join $out_dir ip_project] -part $part",
        f"add_files -norecurse [list [file join $out_dir {TOP_MODULE}.v] "
        f"[file join $out_dir {CORE_MODULE}.v]]",
        f"set_property top {TOP_MODULE} [current_fileset]",
        "update_compile_order -fileset sources_1",
        f"ipx::package_project -root_dir $ip_dir -vendor {v} -library {lib} "
        f"-taxonomy /UserIP -import_files -set_current true -force",
        "set core [ipx::current_core]",
        f"set_property name {name} $core",
        f"set_property version {ver} $core",
        'set_property display_name "speedllm accelerator" $core',
        'set_property description "speedllm Llama2 accelerator (AXI4-Lite control, AXI4 '
        'masters)" $core',
        "# Replace whatever Vivado inferred by the interfaces below.",
        "foreach bi [ipx::get_bus_interfaces -of_objects $core] {",
        "    ipx::remove_bus_interface [get_property NAME $bi] $core",
        "}",
    ]
    for p in ports:
        mode = "slave" if p.kind == "axil_slave" else "master"
        maps = " ".join(f"{AXI_SIGNALS[m]} {p.name}_{m}" for m, _, _ in p.signals)
        out += [
            f"set bi [ipx::add_bus_interface {p.name} $core]",
            "set_property abstraction_type_vlnv xilinx.com:interface:aximm_rtl:1.0 $bi",
            "set_property bus_type_vlnv xilinx.com:interface:aximm:1.0 $bi",
            f"set_property interface_mode {mode} $bi",
            f"foreach {{logical physical}} {{{maps}}} {{",
            "    set_property physical_name $physical [ipx::add_port_map $logical $bi]",
            "}",
        ]
        if p.kind == "axil_slave":
            out += [
                f"set mm [ipx::add_memory_map {p.name} $core]",
                f"set_property slave_memory_map_ref {p.name} $bi",
                "set block [ipx::add_address_block reg0 $mm]",
                f"set_property range {control_range} $block",
                "set_property width 32 $block",
                "set_property usage register $block",
            ]
        else:
            out += [
                f"set space [ipx::add_address_space {p.name} $core]",
                f"set_property master_address_space_ref {p.name} $bi",
                f"set_property range {1 << p.addr_width} $space",
                f"set_property width {p.addr_width} $space",
            ]
    busifs = ":".join(p.name for p in ports)
    out += [
        "set clk [ipx::add_bus_interface aclk $core]",
        "set_property abstraction_type_vlnv xilinx.com:signal:clock_rtl:1.0 $clk",
        "set_property bus_type_vlnv xilinx.com:signal:clock:1.0 $clk",
        "set_property interface_mode slave $clk",
        "set_property physical_name aclk [ipx::add_port_map CLK $clk]",
        f"set_property value {busifs} [ipx::add_bus_parameter ASSOCIATED_BUSIF $clk]",
        "set_property value aresetn [ipx::add_bus_parameter ASSOCIATED_RESET $clk]",
        "set rst [ipx::add_bus_interface aresetn $core]",
        "set_property abstraction_type_vlnv xilinx.com:signal:reset_rtl:1.0 $rst",
        "set_property bus_type_vlnv xilinx.com:signal:reset:1.0 $rst",
        "set_property interface_mode slave $rst",
        "set_property physical_name aresetn [ipx::add_port_map RST $rst]",
        "set_property value ACTIVE_LOW [ipx::add_bus_parameter POLARITY $rst]",
        "ipx::create_xgui_files $core",
        "ipx::update_checksums $core",
        "ipx::check_integrity $core",
        "ipx::save_core $core",
        "close_project",
    ]
    return out


def render_build_tcl(component: wiring.Component, target: Target, *, stem: str) -> str:
    """The whole ``build.tcl`` for ``component`` on ``target`` (see the module docstring)."""
    if target.flow != "vivado":
        raise ValueError(f"target {target.name} is not a Vivado target")
    ps = _PS[target.ps]
    ports = bus_ports(component)
    controls = [p for p in ports if p.kind == "axil_slave"]
    masters = [p for p in ports if p.kind == "axi_master"]
    if len(controls) != 1:
        raise ValueError(f"the design needs exactly one AXI4-Lite slave, not {len(controls)}")
    widths = {m.data_width for m in masters}
    if len(widths) > 1:
        raise ValueError(f"the AXI masters have different data widths {sorted(widths)}; "
                         f"one HP port width per group is assumed")
    groups = hp_port_groups(masters)
    ctrl = controls[0]
    control_range = max(4096, 1 << ctrl.addr_width, target.control_range)
    board = target.board
    hps = [(i, g[0].data_width if g[0].data_width in ps["hp_widths"] else max(ps["hp_widths"]))
           for i, g in groups]
    config = " ".join(f"CONFIG.{k} {{{v}}}" for k, v in ps["config"](board.fabric_mhz, hps))
    psc = ps["cell"]
    acc = ACCEL_INSTANCE
    lines = [
        f"# Generated by speedllm.bitstreams.vivado for target {target.name}. Do not edit.",
        "# Run: vivado -mode batch -source build.tcl   (or ./build.sh)",
        "set out_dir [file dirname [file normalize [info script]]]",
        f"set target {target.name}",
        f"set part {target.part}",
        f"set board_part_pattern {target.board_part}",
        f"set fabric_mhz {board.fabric_mhz:g}",
        f"set ip_vlnv {ACCEL_VLNV}",
        f"set control_base 0x{target.control_base:08X}",
        f"set control_range {control_range}",
        f"set ddr_base 0x{target.ddr_base:08X}",
        f"set ddr_range 0x{target.ddr_range:08X}",
        f"set stem {stem}",
        f"set bd_name {BD_NAME}",
        "set jobs [expr {[info exists ::env(SPEEDLLM_VIVADO_JOBS)] ? "
        "$::env(SPEEDLLM_VIVADO_JOBS) : 2}]",
        "set ip_dir [file join $out_dir ip_repo]",
        "set proj_dir [file join $out_dir vivado]",
        "",
        "proc latest_ipdef {prefix} {",
        "    set defs [lsort -dictionary [get_ipdefs -all -filter \"VLNV =~ ${prefix}:*\"]]",
        "    if {[llength $defs] == 0} { error \"speedllm: no IP $prefix in this Vivado\" }",
        "    return [lindex $defs end]",
        "}",
        "proc ddr_segment {name} {",
        "    set seg [get_bd_addr_segs $name]",
        "    if {[llength $seg] == 0} { error \"speedllm: no address segment $name in this PS\" }",
        "    return $seg",
        "}",
        "",
    ]
    lines += _package_ip_tcl(ports, control_range)
    lines += [
        "",
        "# ---- 2. project and block design",
        "create_project -force speedllm $proj_dir -part $part",
        "set board_part [lindex [lsort -dictionary [get_board_parts -quiet "
        "$board_part_pattern]] end]",
        "if {$board_part ne \"\"} {",
        "    set_property board_part $board_part [current_project]",
        "    set preset 1",
        "} else {",
        "    puts \"speedllm: WARNING: no board files for $board_part_pattern: the PS gets "
        "no board preset (DDR/MIO settings); install the board files for a bootable design\"",
        "    set preset 0",
        "}",
        "set_property ip_repo_paths [list $ip_dir] [current_project]",
        "update_ip_catalog -rebuild",
        "create_bd_design $bd_name",
        f"set ps [create_bd_cell -type ip -vlnv [latest_ipdef {ps['ip']}] {psc}]",
        f"apply_bd_automation -rule {ps['rule']} -config [list {ps['preset']}] $ps",
        f"set_property -dict [list {config}] $ps",
        f"set accel [create_bd_cell -type ip -vlnv $ip_vlnv {acc}]",
        f"set_property -dict [list CONFIG.C_M_AXI_DDR_BASE {{0x{target.ddr_base:08X}}} "
        f"CONFIG.C_M_AXI_DDR_RANGE {{0x{target.ddr_range:08X}}}] $accel",
        "set rst [create_bd_cell -type ip -vlnv [latest_ipdef xilinx.com:ip:proc_sys_reset] "
        "rst_fabric]",
        "set ctrl_smc [create_bd_cell -type ip -vlnv [latest_ipdef xilinx.com:ip:smartconnect] "
        "ctrl_smc]",
        "set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] $ctrl_smc",
        f"connect_bd_intf_net [get_bd_intf_pins {psc}/{ps['gp']}] "
        f"[get_bd_intf_pins ctrl_smc/S00_AXI]",
        f"connect_bd_intf_net [get_bd_intf_pins ctrl_smc/M00_AXI] "
        f"[get_bd_intf_pins {acc}/{ctrl.name}]",
    ]
    clocked = [f"{psc}/{ps['gp_clk']}", "rst_fabric/slowest_sync_clk", f"{acc}/aclk",
               "ctrl_smc/aclk"]
    resets = [f"{acc}/aresetn", "ctrl_smc/aresetn"]
    lines.append("# AXI masters -> one SmartConnect per HP port -> the PS's DDR.")
    for i, group in groups:
        smc = f"mem_smc_{i}"
        lines += [
            f"# HP{i}: " + ", ".join(m.name for m in group),
            f"set smc [create_bd_cell -type ip -vlnv [latest_ipdef xilinx.com:ip:smartconnect] "
            f"{smc}]",
            f"set_property -dict [list CONFIG.NUM_SI {{{len(group)}}} CONFIG.NUM_MI {{1}}] $smc",
        ]
        lines += [f"connect_bd_intf_net [get_bd_intf_pins {acc}/{m.name}] "
                  f"[get_bd_intf_pins {smc}/S{j:02d}_AXI]" for j, m in enumerate(group)]
        lines += [f"connect_bd_intf_net [get_bd_intf_pins {smc}/M00_AXI] "
                  f"[get_bd_intf_pins {psc}/{ps['hp'].format(i=i)}]"]
        clocked += [f"{smc}/aclk", f"{psc}/{ps['hp_clk'].format(i=i)}"]
        resets.append(f"{smc}/aresetn")
    lines += [
        f"connect_bd_net [get_bd_pins {psc}/{ps['fclk']}] "
        + " ".join(f"[get_bd_pins {p}]" for p in clocked),
        f"connect_bd_net [get_bd_pins {psc}/{ps['fresetn']}] [get_bd_pins rst_fabric/ext_reset_in]",
        "connect_bd_net [get_bd_pins rst_fabric/peripheral_aresetn] "
        + " ".join(f"[get_bd_pins {p}]" for p in resets),
        "",
        "# Address map: the control window where the host looks for it, DDR for the masters.",
        f"assign_bd_address -offset $control_base -range $control_range "
        f"-target_address_space [get_bd_addr_spaces {psc}/{ps['data_space']}] "
        f"[get_bd_addr_segs {acc}/{ctrl.name}/reg0] -force",
    ]
    for i, group in groups:
        seg = f"{psc}/{ps['ddr_seg'].format(i=i, gp=i + 2)}"
        lines += [f"assign_bd_address -offset $ddr_base -range $ddr_range "
                  f"-target_address_space [get_bd_addr_spaces {acc}/{m.name}] "
                  f"[ddr_segment {seg}] -force" for m in group]
    lines += [
        "assign_bd_address",
        "set map [open [file join $out_dir address_map.txt] w]",
        f"foreach space [list {psc}/{ps['data_space']} "
        + " ".join(f"{acc}/{m.name}" for m in masters) + "] {",
        "    foreach seg [get_bd_addr_segs -of_objects [get_bd_addr_spaces $space]] {",
        "        puts $map \"$space [get_property OFFSET $seg] [get_property RANGE $seg] $seg\"",
        "    }",
        "}",
        "close $map",
        "validate_bd_design",
        "save_bd_design",
        "",
        "# ---- 3. synthesis, implementation, bitstream, hardware handoff",
        "set bd_file [get_files $bd_name.bd]",
        "generate_target all $bd_file",
        "add_files -norecurse [make_wrapper -files $bd_file -top]",
        "set_property top ${bd_name}_wrapper [current_fileset]",
        "update_compile_order -fileset sources_1",
        "launch_runs synth_1 -jobs $jobs",
        "wait_on_run synth_1",
        "if {[get_property PROGRESS [get_runs synth_1]] ne \"100%\"} {",
        "    error \"speedllm: synthesis failed (see $proj_dir)\"",
        "}",
        "launch_runs impl_1 -to_step write_bitstream -jobs $jobs",
        "wait_on_run impl_1",
        "if {[get_property PROGRESS [get_runs impl_1]] ne \"100%\"} {",
        "    error \"speedllm: implementation failed (see $proj_dir)\"",
        "}",
        "open_run impl_1",
        "report_utilization -file [file join $out_dir utilization.rpt]",
        "report_timing_summary -file [file join $out_dir timing.rpt]",
        "set impl_dir [get_property DIRECTORY [get_runs impl_1]]",
        "file copy -force [file join $impl_dir ${bd_name}_wrapper.bit] "
        "[file join $out_dir $stem.bit]",
        "set hwh [lindex [get_files -all -of_objects $bd_file $bd_name.hwh] 0]",
        "if {$hwh eq \"\" || ![file exists $hwh]} {",
        "    error \"speedllm: no $bd_name.hwh was generated\"",
        "}",
        "file copy -force $hwh [file join $out_dir $stem.hwh]",
        "puts \"speedllm: wrote [file join $out_dir $stem.bit] and $stem.hwh\"",
        "",
    ]
    return "\n".join(lines)


def _build_sh() -> str:
    return "\n".join([
        "#!/bin/sh",
        "# Generated by speedllm.bitstreams.vivado. Builds the overlay: needs Vivado on PATH.",
        "set -e",
        'cd "$(dirname "$0")"',
        "if ! command -v vivado >/dev/null 2>&1; then",
        '    echo "build.sh: vivado is not on PATH (source <Vivado>/settings64.sh)" >&2',
        "    exit 1",
        "fi",
        "exec vivado -mode batch -notrace -nojournal -log vivado.log -source build.tcl",
        ""])


def write_vivado_project(component: wiring.Component, target: Target | str,
                         out_dir: str | os.PathLike, *, stem: str | None = None) -> dict:
    """Write the Vivado project scripts for ``component`` on ``target`` into ``out_dir``.

    Returns the manifest (also written as ``target.json``).
    """
    if isinstance(target, str):
        target = get_target(target)
    if target.flow != "vivado":
        raise ValueError(f"target {target.name} is not a Vivado target")
    stem = stem or f"speedllm_{target.name.replace('-', '_')}"
    ports = bus_ports(component)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    core_v = verilog.convert(component, name=CORE_MODULE)
    files = {
        f"{CORE_MODULE}.v": core_v,
        f"{TOP_MODULE}.v": render_wrapper(component, target),
        "build.tcl": render_build_tcl(component, target, stem=stem),
        "build.sh": _build_sh(),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    (out / "build.sh").chmod(0o755)
    ctrl = next(p for p in ports if p.kind == "axil_slave")
    groups = hp_port_groups([p for p in ports if p.kind == "axi_master"])
    manifest = {
        "target": target.name, "flow": "vivado", "part": target.part,
        "board_part": target.board_part, "ps": _PS[target.ps]["ip"],
        "fabric_mhz": target.board.fabric_mhz, "ip_vlnv": ACCEL_VLNV,
        "instance": ACCEL_INSTANCE,
        "control": {"port": ctrl.name, "base": target.control_base,
                    "range": max(4096, 1 << ctrl.addr_width, target.control_range)},
        "ddr": {"base": target.ddr_base, "range": target.ddr_range},
        "masters": [{"port": m.name, "hp": i, "interconnect": f"mem_smc_{i}",
                     "slave_port": f"S{j:02d}_AXI", "data_width": m.data_width,
                     "reads": m.reads, "writes": m.writes}
                    for i, group in groups for j, m in enumerate(group)],
        "hp_ports": [{"hp": i, "masters": [m.name for m in group]} for i, group in groups],
        "bit": f"{stem}.bit", "hwh": f"{stem}.hwh",
        "files": sorted(files) + ["target.json"],
    }
    (out / "target.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
