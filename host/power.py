"""Measured board power during generation, from the PYNQ power rails.

PYNQ reads a board's PMBus/INA power monitors through libsensors: ``pynq.get_rails()``
maps rail names to ``Rail`` objects whose ``power`` sensor (watts) a ``pynq.DataRecorder``
samples on a thread. :class:`PowerMeter` records every rail with a power sensor while a
block runs and turns the samples into joules per token::

    meter = PowerMeter.from_pynq()
    with meter:
        for token in session.generate(prompt, steps=256): ...
    figures = meter.figures(tokens=256)     # power_w, energy_j, j_per_token, tokens_per_j

Power = the mean over samples of the sum of the rails' power; energy = power x the wall
time of the block. Every figure is *measured* (unlike :mod:`speedllm.ops.energy`, which
estimates). Boards with rail monitors: ZCU104 and KV260 (PMBus); the PYNQ-Z2 has none,
and neither has an x86 machine, where :meth:`PowerMeter.from_pynq` fails with one line.
"""

from __future__ import annotations

import time

from speedllm.errors import AcceleratorError

__all__ = ["PowerMeter", "DEFAULT_INTERVAL_S"]

#: Seconds between samples of the rails.
DEFAULT_INTERVAL_S = 0.05


class PowerMeter:
    """Records the power sensors of ``rails`` (name -> ``pynq.pmbus.Rail``) while it is
    entered as a context manager.

    Parameters
    ----------
    rails : dict
        Rails from ``pynq.get_rails()``; those without a ``power`` sensor are ignored.
    recorder_class : type
        ``pynq.DataRecorder`` (or a class with its interface).
    interval_s : float
        Sampling interval.
    """

    def __init__(self, rails: dict, recorder_class, interval_s: float = DEFAULT_INTERVAL_S):
        self.sensors = {name: r.power for name, r in sorted(rails.items())
                        if getattr(r, "power", None) is not None}
        if not self.sensors:
            raise AcceleratorError("no power rails to measure: pynq.get_rails() found no "
                                   "rail with a power sensor on this machine (--power needs "
                                   "a board with PMBus power monitors, e.g. ZCU104 or KV260)")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, not {interval_s!r}")
        self.interval_s = interval_s
        try:
            self._recorder = recorder_class(*self.sensors.values())
        except ImportError as e:         # pynq.DataRecorder imports pandas when built
            raise AcceleratorError(f"the power recorder needs {e.name or 'pandas'} "
                                   f"(pip install -e '.[pynq]')") from None
        self.seconds: float | None = None

    @classmethod
    def from_pynq(cls, interval_s: float = DEFAULT_INTERVAL_S) -> "PowerMeter":
        """A meter over every rail PYNQ finds (``AcceleratorError`` without pynq or rails)."""
        try:
            import pynq
        except ImportError as e:
            raise AcceleratorError(f"--power needs the pynq package ({e})") from None
        return cls(pynq.get_rails(), pynq.DataRecorder, interval_s)

    def __enter__(self) -> "PowerMeter":
        self._t0 = time.perf_counter()
        self._recorder.record(self.interval_s)
        return self

    def __exit__(self, *exc) -> None:
        self._recorder.stop()
        self.seconds = time.perf_counter() - self._t0

    def figures(self, tokens: int) -> dict:
        """Measured power and energy of the recorded block over ``tokens`` tokens."""
        if self.seconds is None:
            raise RuntimeError("nothing recorded yet: use the meter as a context manager")
        frame = self._recorder.frame
        columns = [s.name for s in self.sensors.values()]
        if len(frame) == 0:
            raise AcceleratorError(f"the power recorder took no sample in "
                                   f"{self.seconds:.3f} s (interval {self.interval_s} s)")
        per_rail = {name: float(frame[s.name].mean()) for name, s in self.sensors.items()}
        power = float(frame[columns].sum(axis=1).mean())
        energy = power * self.seconds
        return {"power_w": power, "seconds": self.seconds, "energy_j": energy,
                "j_per_token": energy / tokens if tokens else None,
                "tokens_per_j": tokens / energy if energy > 0 else None,
                "rails_w": per_rail, "samples": int(len(frame)),
                "kind": "measured (pynq.get_rails power sensors, DataRecorder)"}
