"""Accelerator backends for the generation loop: ``board``, ``pynq-sim`` and ``rtl``.

Importing this module registers them in :mod:`speedllm.golden.generate`'s registry
(beside ``float`` and ``golden``); :func:`register_backend` is that registry's entry
point. Each is an :class:`AcceleratorBackend`: the PYNQ driver
(:class:`speedllm.host.driver.SpeedLLMAccelerator`) with a compiled program loaded.

``board``
    Real PYNQ on a Zynq board: ``pynq.Overlay(bitstream)`` (its ``.hwh`` beside it),
    the driver bound from the overlay.
``pynq-sim``
    The same driver code through ``pynq.Overlay`` on the simulated device
    (:mod:`speedllm.host.sim_device`) from a ``.hwh`` written from the register map; the
    accelerator is :class:`speedllm.host.accel_model.AcceleratorModel` (the golden
    interpreter behind the registers), so its tokens equal the ``golden`` backend's.
``rtl``
    The simulated device over the Verilator harness of the accelerator top
    (:class:`speedllm.host.sim_device.HarnessBus`, :mod:`speedllm.host.rtl`), the DRAM
    model set from a board profile (``board``, default pynq-z2). Same driver code.

Options (``create_backend(name, checkpoint, **options)``): ``scheme``, ``fusion``
(a ``FusionConfig``), ``reuse``, ``act_space``, ``timeout_s``, ``progress``
(``progress(nbytes)`` during the weight upload); ``bitstream`` for ``board``; ``board`` (DRAM profile) for ``rtl``;
``bus`` for ``pynq-sim`` (default a fresh ``AcceleratorModel``).
"""

from __future__ import annotations

import importlib
import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from speedllm.errors import AcceleratorError, InputError
from speedllm.golden import generate as _generate
from speedllm.golden.checkpoint import Checkpoint

__all__ = ["AcceleratorBackend", "register_backend", "BOARD_BACKENDS"]

#: Backend names this module adds.
BOARD_BACKENDS = ("board", "pynq-sim", "rtl")


def register_backend(name: str, factory) -> None:
    """Register ``factory(checkpoint, **options) -> backend`` under ``name`` (the registry
    of :mod:`speedllm.golden.generate`, so the CLI's ``--backend`` lists it)."""
    _generate.register_backend(name, factory)


def _import_pynq():
    try:
        return importlib.import_module("pynq")
    except ModuleNotFoundError as e:
        if e.name != "pynq":
            raise
        raise AcceleratorError("this backend needs the pynq package (pip install "
                               "'speedllm[pynq]'), which is not installed") from None


class AcceleratorBackend:
    """A generation backend over the PYNQ driver: ``args``, ``reset()``, ``forward()``.

    ``last_cycles`` is the accelerator's ``total_cycles`` for the last position (None
    when the device is untimed, e.g. the functional model).
    """

    def __init__(self, driver, program, args, *, timed: bool = True, timeout_s: float = 10.0,
                 keep=None):
        self.driver, self.program, self.args = driver, program, args
        self.timed, self.timeout_s = timed, timeout_s
        self.last_cycles: int | None = None
        self.last_counters: dict | None = None
        self.step_cycles: list[int] = []           # total_cycles of each step since reset()
        self.cycles_by_command: dict[str, int] = {}   # summed per command class
        self.rtl = None            # the RtlDevice of the rtl backend
        self._keep = keep          # objects that must live as long as the backend

    def reset(self) -> None:
        self.driver.reset_state()
        self.step_cycles, self.cycles_by_command = [], {}

    def forward(self, token: int, pos: int) -> np.ndarray:
        if not 0 <= token < self.args.vocab_size:
            raise InputError(f"token {token} outside the vocabulary "
                             f"(0..{self.args.vocab_size - 1})")
        if not 0 <= pos < self.args.seq_len:
            raise InputError(f"position {pos} outside the context (0..{self.args.seq_len - 1})")
        logits = self.driver.step(token, pos, timeout_s=self.timeout_s)
        self.last_cycles = self.driver.last_cycles if self.timed else None
        self.last_counters = self.driver.counters() if self.timed else None
        if self.last_counters is not None:
            self.step_cycles.append(int(self.last_cycles))
            for cls, c in self.last_counters.items():
                if isinstance(c, dict) and c["cycles"]:
                    self.cycles_by_command[cls] = self.cycles_by_command.get(cls, 0) + c["cycles"]
        return logits

    def sim_cycles_per_s(self) -> float | None:
        """Simulated clock cycles per wall second so far (rtl backend only)."""
        if self.rtl is None or not self.rtl.bus.sim_seconds:
            return None
        return self.rtl.bus.sim_cycles / self.rtl.bus.sim_seconds


def _compile(checkpoint: Checkpoint, scheme=None, fusion=None, reuse=True,
             act_space="scratchpad"):
    from speedllm.ops.compiler import compile_model
    from speedllm.ops.fusion import FusionConfig
    return compile_model(checkpoint, scheme, FusionConfig() if fusion is None else fusion,
                         reuse, act_space=act_space)


def _connect(overlay_path: Path, device, checkpoint, *, scheme, fusion, reuse, act_space,
             progress, timeout_s, timed, keep, program=None, configs=None):
    pynq = _import_pynq()
    from .driver import SpeedLLMAccelerator
    from .hwh import ACCEL_INSTANCE
    overlay = pynq.Overlay(str(overlay_path), device=device)
    driver = getattr(overlay, ACCEL_INSTANCE, None)
    if not isinstance(driver, SpeedLLMAccelerator):
        raise AcceleratorError(f"{overlay_path}: no speedllm accelerator "
                               f"({ACCEL_INSTANCE}) in the overlay's metadata")
    if program is None:
        program = _compile(checkpoint, scheme, fusion, reuse, act_space)
    if configs is not None:
        driver.known_configs = list(configs)
    driver.load_program(program, progress=progress)
    driver.check_hardware(program)
    return AcceleratorBackend(driver, program, checkpoint.args, timed=timed,
                              timeout_s=timeout_s, keep=(overlay, *keep))


def _sim_backend(checkpoint: Checkpoint, *, scheme=None, fusion=None, reuse=True,
                 act_space="scratchpad", progress=None, timeout_s: float = 10.0, bus=None,
                 **options: Any):
    if options:
        raise InputError(f"the pynq-sim backend does not take {', '.join(options)}")
    _import_pynq()
    from .hwh import write_hwh
    from .sim_device import AcceleratorModel, SimulatedDevice
    bus = AcceleratorModel() if bus is None else bus
    device = SimulatedDevice.activate(bus)
    folder = tempfile.TemporaryDirectory(prefix="speedllm-hwh-")
    hwh = write_hwh(Path(folder.name) / "speedllm_sim.hwh")
    return _connect(hwh, device, checkpoint, scheme=scheme, fusion=fusion, reuse=reuse,
                    act_space=act_space, progress=progress, timeout_s=timeout_s,
                    timed=getattr(bus, "timed", True), keep=(folder, device))


def _rtl_backend(checkpoint: Checkpoint, *, scheme=None, fusion=None, reuse=True,
                 act_space="scratchpad", progress=None, timeout_s: float = 3600.0,
                 board=None, **options: Any):
    if options:
        raise InputError(f"the rtl backend does not take {', '.join(options)}")
    _import_pynq()
    from speedllm.hw.accel_regs import describe
    from .hwh import write_hwh
    from .rtl import DEFAULT_BOARD, RtlDevice, hardware_config_for
    from .sim_device import SimulatedDevice
    program = _compile(checkpoint, scheme, fusion, reuse, act_space)
    config = hardware_config_for(checkpoint.args, program.scratchpad_bytes)
    # image + program, each in its own page-aligned allocation, and slack
    dram_bytes = len(program.image) + len(program.words) + (1 << 20)
    rtl = RtlDevice(config, dram_bytes=dram_bytes, board=board or DEFAULT_BOARD)
    device = SimulatedDevice.activate(rtl.bus)
    folder = tempfile.TemporaryDirectory(prefix="speedllm-hwh-")
    hwh = write_hwh(Path(folder.name) / "speedllm_rtl.hwh", describe(config))
    backend = _connect(hwh, device, checkpoint, scheme=scheme, fusion=fusion, reuse=reuse,
                       act_space=act_space, progress=progress, timeout_s=timeout_s,
                       timed=True, keep=(folder, device, rtl), program=program,
                       configs=(config,))
    backend.rtl = rtl
    return backend


def _board_backend(checkpoint: Checkpoint, *, bitstream=None, scheme=None, fusion=None,
                   reuse=True, act_space="scratchpad", progress=None, timeout_s: float = 10.0,
                   **options: Any):
    if options:
        raise InputError(f"the board backend does not take {', '.join(options)}")
    pynq = _import_pynq()
    from .sim_device import SimulatedDevice
    devices = [d for d in pynq.Device.devices if not isinstance(d, SimulatedDevice)]
    if not devices:
        raise AcceleratorError("no PYNQ board found (pynq sees no FPGA device): the board "
                               "backend runs on a Zynq board with the speedllm overlay")
    if bitstream is None:
        raise InputError("the board backend needs a bitstream (its .hwh beside it)")
    path = Path(bitstream)
    if not path.is_file():
        raise InputError(f"{path}: bitstream not found")
    return _connect(path, devices[0], checkpoint, scheme=scheme, fusion=fusion, reuse=reuse,
                    act_space=act_space, progress=progress, timeout_s=timeout_s, timed=True,
                    keep=())


register_backend("board", _board_backend)
register_backend("pynq-sim", _sim_backend)
register_backend("rtl", _rtl_backend)
