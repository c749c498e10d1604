"""The ``.hwh`` hardware handoff of the accelerator, written from its register map.

PYNQ's ``Overlay(bitfile)`` reads the ``.hwh`` beside a bitstream to learn which IP sits
at which address and binds a driver by the IP's VLNV. Vivado writes that file for a real
build; for the simulated device (:mod:`speedllm.host.sim_device`) and for tests this
module writes an equivalent one from :data:`speedllm.hw.accel_regs.ACCEL_REGMAP`, so the
same driver code binds in CI and on a board. It describes:

- the Zynq PS (``processing_system7``, PL clock 0 enabled), whose ``M_AXI_GP0`` maps the
  accelerator's AXI4-Lite window;
- the accelerator (VLNV :data:`ACCEL_VLNV`, instance :data:`ACCEL_INSTANCE`) with its
  ``s_axil`` register block (every register and field of the map, so PYNQ's own
  ``register_map`` works too) and its ``m_axi`` master mapped onto the PS's ``S_AXI_HP0``
  DDR window, also given as the parameters ``C_M_AXI_DDR_BASE`` / ``C_M_AXI_DDR_RANGE``
  that the driver reads to size-check uploads.

Parse with ``pynqmetadata`` (``RuntimeMetadataParser(Metadata(input=path))``), as PYNQ 3+
does; :func:`parse_hwh` is that call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

__all__ = ["ACCEL_VLNV", "ACCEL_INSTANCE", "HwhLayout", "render_hwh", "write_hwh", "parse_hwh"]

#: The accelerator's VLNV (vendor:library:name:version): the driver's ``bindto``.
ACCEL_VLNV = "speedllm:accel:speedllm_top:1.0"
#: Instance name of the accelerator in the block design (its attribute on the Overlay).
ACCEL_INSTANCE = "speedllm_0"
_PS_INSTANCE = "processing_system7_0"
_ACCESS = {"rw": "read-write", "r": "read-only", "w1c": "read-write", "w1p": "write-only"}


@dataclass(frozen=True)
class HwhLayout:
    """Addresses of the block design.

    Defaults are a Zynq-7000 (PYNQ-Z2): the first GP0 slot and the 512 MiB DDR as seen
    from HP0.
    """

    ctrl_base: int = 0x43C0_0000       # AXI4-Lite window of the accelerator on M_AXI_GP0
    ctrl_range: int = 0x1_0000         # 64 KiB (the register file decodes 16 bits)
    ddr_base: int = 0x0000_0000        # DDR through S_AXI_HP0
    ddr_range: int = 0x2000_0000       # 512 MiB
    fclk_mhz: float = 100.0
    data_bits: int = 64                # m_axi data width


def _registers_xml(regmap_description: dict, indent: str) -> list[str]:
    lines = [f"{indent}<REGISTERS>"]
    for reg in regmap_description["registers"]:
        accesses = {f["access"] for f in reg["fields"]}
        access = "read-only" if accesses == {"r"} else "read-write"
        lines += [f"{indent}  <REGISTER NAME={quoteattr(reg['name'].upper())}>",
                  f'{indent}    <PROPERTY NAME="DESCRIPTION" VALUE={quoteattr(reg["doc"])}/>',
                  f'{indent}    <PROPERTY NAME="ADDRESS_OFFSET" VALUE="{reg["offset"]:#x}"/>',
                  f'{indent}    <PROPERTY NAME="SIZE" VALUE="{regmap_description["width"]}"/>',
                  f'{indent}    <PROPERTY NAME="ACCESS" VALUE="{access}"/>',
                  f'{indent}    <PROPERTY NAME="IS_ENABLED" VALUE="true"/>',
                  f'{indent}    <PROPERTY NAME="RESET_VALUE" VALUE="{reg["reset"]:#x}"/>',
                  f"{indent}    <FIELDS>"]
        for f in reg["fields"]:
            lines += [f"{indent}      <FIELD NAME={quoteattr(f['name'].upper())}>",
                      f'{indent}        <PROPERTY NAME="DESCRIPTION" VALUE={quoteattr(f["doc"])}/>',
                      f'{indent}        <PROPERTY NAME="ACCESS" VALUE="{_ACCESS[f["access"]]}"/>',
                      f'{indent}        <PROPERTY NAME="BIT_OFFSET" VALUE="{f["offset"]}"/>',
                      f'{indent}        <PROPERTY NAME="BIT_WIDTH" VALUE="{f["width"]}"/>',
                      f"{indent}      </FIELD>"]
        lines += [f"{indent}    </FIELDS>", f"{indent}  </REGISTER>"]
    lines.append(f"{indent}</REGISTERS>")
    return lines


def _hex(v: int) -> str:
    return f"0x{v:08X}"


def render_hwh(regmap_description: dict | None = None, layout: HwhLayout = HwhLayout(),
               *, hw_id: int | None = None, config_hash: int | None = None) -> str:
    """The ``.hwh`` XML text.

    ``regmap_description`` is ``RegisterMap.describe()`` (default: the accelerator's map,
    :func:`speedllm.hw.accel_regs.describe`, whose ``hw_id``/``config_hash`` also become
    module parameters ``HW_ID``/``CONFIG_HASH`` unless given).
    """
    if regmap_description is None:
        from speedllm.hw.accel_regs import describe
        regmap_description = describe()
    hw_id = regmap_description.get("hw_id", 0) if hw_id is None else hw_id
    config_hash = regmap_description.get("config_hash", 0) if config_hash is None \
        else config_hash
    a = layout
    ctrl_high, ddr_high = a.ctrl_base + a.ctrl_range - 1, a.ddr_base + a.ddr_range - 1
    name = ACCEL_VLNV.split(":")[2]
    ps_params = {"PCW_FPGA0_PERIPHERAL_FREQMHZ": f"{a.fclk_mhz:g}"}
    for k in range(4):       # PL clock 0 on (1000 MHz IO PLL / 5 / 2 = 100 MHz), 1..3 off
        ps_params.update({f"PCW_FPGA_FCLK{k}_ENABLE": "1" if k == 0 else "0",
                          f"PCW_FCLK{k}_PERIPHERAL_DIVISOR0": "5" if k == 0 else "1",
                          f"PCW_FCLK{k}_PERIPHERAL_DIVISOR1": "2" if k == 0 else "1",
                          f"PCW_FCLK{k}_PERIPHERAL_CLKSRC": "IO PLL",
                          # the name pynqmetadata reads the achieved frequency from
                          f"PSU__CRL_APB__PL{k}_REF_CTRL__ACT_FREQMHZ": f"{a.fclk_mhz:g}"})
    accel_params = {"C_S_AXI_CONTROL_ADDR_WIDTH": "16", "C_S_AXI_CONTROL_DATA_WIDTH": "32",
                    "C_M_AXI_DATA_WIDTH": str(a.data_bits), "C_M_AXI_DDR_BASE": _hex(a.ddr_base),
                    "C_M_AXI_DDR_RANGE": _hex(a.ddr_range), "HW_ID": _hex(hw_id),
                    "CONFIG_HASH": _hex(config_hash)}

    def params(d, ind):
        return [f'{ind}<PARAMETER NAME="{k}" VALUE={quoteattr(v)}/>' for k, v in d.items()]

    def aximm(itf, bus, type_, proto, ind):
        return [f'{ind}<BUSINTERFACE BUSNAME="{bus}" NAME="{itf}" TYPE="{type_}" '
                f'VLNV="xilinx.com:interface:aximm:1.0">',
                f'{ind}  <PARAMETER NAME="PROTOCOL" VALUE="{proto}"/>',
                f'{ind}  <PORTMAPS/>', f"{ind}</BUSINTERFACE>"]

    i4, i6, i8 = " " * 4, " " * 6, " " * 8
    lines = ['<?xml version="1.0" encoding="UTF-8" standalone="no" ?>',
             '<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="generated by speedllm.host.hwh" '
             'VIVADOVERSION="none">',
             '  <SYSTEMINFO ARCH="zynq" DEVICE="7z020" NAME="speedllm" PACKAGE="clg400" '
             'SPEEDGRADE="-1"/>',
             "  <EXTERNALPORTS/>", "  <EXTERNALINTERFACES/>", "  <MODULES>",
             # the PS: clocks, GP0 master mapping the accelerator, HP0 slave
             f'{i4}<MODULE FULLNAME="/{_PS_INSTANCE}" HWVERSION="5.5" INSTANCE="{_PS_INSTANCE}" '
             'IPTYPE="PERIPHERAL" IS_ENABLE="1" IS_PL="FALSE" MODTYPE="processing_system7" '
             'VLNV="xilinx.com:ip:processing_system7:5.5">',
             f"{i6}<PARAMETERS>", *params(ps_params, i8), f"{i6}</PARAMETERS>",
             f"{i6}<PORTS/>", f"{i6}<BUSINTERFACES>",
             *aximm("M_AXI_GP0", "ps_gp0", "MASTER", "AXI3", i8),
             *aximm("S_AXI_HP0", "accel_m_axi", "SLAVE", "AXI3", i8),
             f"{i6}</BUSINTERFACES>", f"{i6}<MEMORYMAP>",
             f'{i8}<MEMRANGE ADDRESSBLOCK="Reg" BASENAME="C_S_AXI_CONTROL_BASEADDR" '
             f'BASEVALUE="{_hex(a.ctrl_base)}" HIGHNAME="C_S_AXI_CONTROL_HIGHADDR" '
             f'HIGHVALUE="{_hex(ctrl_high)}" INSTANCE="{ACCEL_INSTANCE}" IS_DATA="TRUE" '
             'IS_INSTRUCTION="TRUE" MASTERBUSINTERFACE="M_AXI_GP0" MEMTYPE="REGISTER" '
             'SLAVEBUSINTERFACE="s_axil"/>',
             f"{i6}</MEMORYMAP>", f"{i4}</MODULE>",
             # the accelerator
             f'{i4}<MODULE FULLNAME="/{ACCEL_INSTANCE}" HWVERSION="1.0" '
             f'INSTANCE="{ACCEL_INSTANCE}" IPTYPE="PERIPHERAL" IS_ENABLE="1" '
             f'MODCLASS="PERIPHERAL" MODTYPE="{name}" VLNV="{ACCEL_VLNV}">',
             f"{i6}<PARAMETERS>", *params(accel_params, i8), f"{i6}</PARAMETERS>",
             f"{i6}<ADDRESSBLOCKS>",
             f'{i8}<ADDRESSBLOCK ACCESS="read-write" INTERFACE="s_axil" NAME="Reg" '
             f'RANGE="{a.ctrl_range}" USAGE="register">',
             *_registers_xml(regmap_description, i8 + "  "),
             f"{i8}</ADDRESSBLOCK>", f"{i6}</ADDRESSBLOCKS>",
             f"{i6}<PORTS/>", f"{i6}<BUSINTERFACES>",
             *aximm("s_axil", "ps_gp0", "SLAVE", "AXI4LITE", i8),
             *aximm("m_axi", "accel_m_axi", "MASTER", "AXI4", i8),
             f"{i6}</BUSINTERFACES>", f"{i6}<MEMORYMAP>",
             f'{i8}<MEMRANGE ADDRESSBLOCK="HP0_DDR_LOWOCM" BASENAME="C_BASEADDR" '
             f'BASEVALUE="{_hex(a.ddr_base)}" HIGHNAME="C_HIGHADDR" '
             f'HIGHVALUE="{_hex(ddr_high)}" INSTANCE="{_PS_INSTANCE}" IS_DATA="TRUE" '
             'IS_INSTRUCTION="TRUE" MASTERBUSINTERFACE="m_axi" MEMTYPE="MEMORY" '
             'SLAVEBUSINTERFACE="S_AXI_HP0"/>',
             f"{i6}</MEMORYMAP>", f"{i4}</MODULE>",
             "  </MODULES>", "</EDKSYSTEM>"]
    return "\n".join(lines) + "\n"


def write_hwh(path, regmap_description: dict | None = None,
              layout: HwhLayout = HwhLayout(), **kwargs) -> Path:
    """Write :func:`render_hwh` to ``path`` (conventionally ``<bitstream>.hwh``)."""
    path = Path(path)
    path.write_text(render_hwh(regmap_description, layout, **kwargs))
    return path


def parse_hwh(path):
    """PYNQ's runtime view of a ``.hwh`` (``ip_dict``, ``mem_dict``, ``clock_dict``, ...)."""
    from pynqmetadata.frontends import Metadata
    from pynqmetadata.views.runtime import RuntimeMetadataParser
    return RuntimeMetadataParser(Metadata(input=Path(path)))
