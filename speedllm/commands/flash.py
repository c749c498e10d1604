"""Load a bitstream onto a board and check that the accelerator answers.

Zynq boards (pynq-z2, kv260, zcu104): run this ON the board (a PYNQ image). It downloads
the overlay with pynq.Overlay (the .hwh with the same stem must sit next to the .bit), finds
the accelerator by its VLNV (speedllm:accel:speedllm_top:1.0) and reads its hw_id register
(offset from the register map, speedllm.hw.accel_regs), which must equal this build's HW_ID.

ulx3s-85f: runs `openFPGALoader -b ulx3s BIT` (SRAM load; add --write-flash to keep it
across power cycles).

Off a board (no PYNQ device, pynq or openFPGALoader not installed, a missing .bit or .hwh)
it prints one line and exits 1.

Examples:
  speedllm flash build/bitstreams/pynq-z2/speedllm_pynq_z2.bit --target pynq-z2
  speedllm flash build/bitstreams/ulx3s-85f/dma_copy_ulx3s_85f.bit --target ulx3s-85f
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from speedllm.errors import AcceleratorError, InputError

HELP = "load a bitstream onto a board (PYNQ overlay + ID check, or openFPGALoader)"

ZYNQ_TARGETS = ("pynq-z2", "kv260", "zcu104")
ECP5_TARGETS = ("ulx3s-85f",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bit", metavar="BIT", help="the .bit file")
    parser.add_argument("--target", required=True, choices=ZYNQ_TARGETS + ECP5_TARGETS,
                        help="the board")
    parser.add_argument("--write-flash", action="store_true",
                        help="ulx3s-85f: write the SPI flash instead of loading SRAM")


def _check_files(bit: Path, need_hwh: bool) -> None:
    if not bit.is_file():
        raise InputError(f"{bit}: no such bitstream file")
    if bit.suffix != ".bit":
        raise InputError(f"{bit}: not a .bit file")
    if need_hwh and not bit.with_suffix(".hwh").is_file():
        raise InputError(f"{bit}: no {bit.with_suffix('.hwh').name} next to it (PYNQ needs "
                         f"the .hwh with the same stem)")


def _board_device():
    """PYNQ's device on a real board; AcceleratorError off a board."""
    try:
        import pynq
    except ImportError:
        raise AcceleratorError("pynq is not installed (pip install 'speedllm[pynq]'); "
                               "flash the Zynq boards from their PYNQ image") from None
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # pynq warns "No devices found" on a PC
        devices = [d for d in pynq.Device.devices
                   if getattr(d, "name", "") != "speedllm-sim"]
    if not devices:
        raise AcceleratorError("no PYNQ device found: `speedllm flash` for a Zynq target runs "
                               "on the board itself (a PYNQ image)")
    return devices[0]


def flash_overlay(bit: Path, device) -> dict:
    """Download ``bit`` (with its .hwh) on ``device`` and check the accelerator's hw_id.

    Returns ``{"instance", "hw_id", "expected"}``; raises :class:`AcceleratorError` when
    the overlay has no speedllm accelerator or its ID is not this build's.
    """
    import pynq

    from speedllm.host import driver        # binds SpeedLLMAccelerator to ACCEL_VLNV
    from speedllm.host.hwh import ACCEL_VLNV
    from speedllm.hw.accel_regs import ACCEL_REGMAP, HW_ID
    try:
        overlay = pynq.Overlay(str(bit), device=device)
    except Exception as e:                   # PYNQ raises many kinds; report one line
        raise AcceleratorError(f"{bit}: overlay download failed: "
                               f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                               ) from None
    names = [n for n, d in overlay.ip_dict.items() if d.get("type") == ACCEL_VLNV]
    if not names:
        raise AcceleratorError(f"{bit}: the overlay has no IP {ACCEL_VLNV}")
    ip = getattr(overlay, names[0])
    if isinstance(ip, driver.SpeedLLMAccelerator):
        found = int(ip.hw_id)
    else:
        found = int(ip.read(ACCEL_REGMAP.offsets()["hw_id"]))
    if found != HW_ID:
        shift, mask = driver.field_bits("hw_id", "magic")
        what = ("not a speedllm accelerator (wrong magic)"
                if (found & mask) >> shift != driver.HW_ID_MAGIC
                else "a different ISA/image-format version")
        raise AcceleratorError(f"{bit}: loaded, but {names[0]}.hw_id reads {found:#010x}, "
                               f"expected {HW_ID:#010x}: {what}")
    return {"instance": names[0], "hw_id": found, "expected": HW_ID}


def flash_ecp5(bit: Path, write_flash: bool = False) -> None:
    tool = shutil.which("openFPGALoader")
    if tool is None:
        raise AcceleratorError("openFPGALoader is not installed (apt-get install "
                               "openfpgaloader): cannot load the ULX3S")
    cmd = [tool, "-b", "ulx3s"] + (["-f"] if write_flash else []) + [str(bit)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise AcceleratorError(f"openFPGALoader failed (exit {proc.returncode}): {last}")


def run(args: argparse.Namespace) -> int:
    bit = Path(args.bit)
    if args.target in ECP5_TARGETS:
        _check_files(bit, need_hwh=False)
        flash_ecp5(bit, args.write_flash)
        print(f"flash: loaded {bit} onto the ULX3S")
        return 0
    _check_files(bit, need_hwh=True)
    result = flash_overlay(bit, _board_device())
    print(f"flash: loaded {bit}; {result['instance']}.hw_id = {result['hw_id']:#010x} "
          f"(this build's)")
    return 0
