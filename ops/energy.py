"""Energy model of one decode step: static power x time + dynamic energy per activity.

**Every figure this module returns is an estimate** (``EnergyEstimate.label``); measured
power comes from a board's rails (``pynq.get_rails()`` / ``pynq.DataRecorder``), not from
here. The model::

    E_token = P_static * t_token
            + e_dram_bit * 8 * dram_bytes        (weights, KV cache, logits, spilled activations)
            + e_mac      * macs                  (int8 weight x int16 activation, 32-bit accumulate)
            + e_bram     * bram_accesses         (64-bit words read or written in block RAM)

    t_token = cycles_per_token / f_clock
    tokens_per_J = 1 / E_token

Coefficients (:data:`ENERGY_PROFILES`, one record per board, each field
``{value, source, assumption}`` like ``bitstreams/boards.json``):

``static_w``
    Board-level power while the accelerator runs, apart from its own switching: the
    processing system running Linux, device leakage of the programmable logic, DRAM
    background power, regulators. **Assumptions** (typical magnitudes of the devices'
    power estimator spreadsheets, Xilinx XPE / UG440 style, not an XPE run of our design):
    replace each with a measurement (``pynq.get_rails()`` on zcu104, a USB power meter on
    pynq-z2, which has no PMBus) when a board is at hand.
``dram_pj_per_bit``
    Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
    energy table (45 nm): a 64-bit DRAM access costs 1.3-2.6 nJ, i.e. 20-41 pJ/bit. DDR3
    (1.5 V) takes the upper end, 2.6 nJ / 64 b = 40.6 pJ/bit; DDR4 (1.2 V) scales it by
    (1.2 / 1.5)^2 (I/O and core energy ~ C V^2): 26.0 pJ/bit. HBM2: about 3.9 pJ/bit
    (O'Connor et al., "Fine-Grained DRAM: Energy-Efficient DRAM for Extreme Bandwidth
    Systems", MICRO 2017). Micron's power notes (TN-41-01 "Calculating Memory System
    Power for DDR3", TN-40-07 for DDR4) give the method to refine these for a given part
    and traffic pattern.
``mac_pj``
    Horowitz ISSCC 2014 (45 nm): 8-bit multiply 0.2 pJ, 32-bit add 0.1 pJ. Our product is
    int8 x int16 (array multiplier energy ~ product of the operand widths: 2 x 0.2 pJ), plus
    a 32-bit accumulate: 0.5 pJ in an ASIC. FPGA dynamic power is about 7.1x an ASIC's for
    designs using hard DSP and memory blocks (14x for soft logic alone): Kuon and Rose,
    "Measuring the Gap Between FPGAs and ASICs", IEEE TCAD 26(2), 2007. 0.5 x 7.1 = 3.55 pJ
    per MAC; no process-node scaling (28 nm / 16 nm devices would do better: conservative).
``bram_pj_per_access``
    Horowitz ISSCC 2014: a 64-bit read of an 8 KB SRAM costs 10 pJ (45 nm). A RAMB36 holds
    4.5 KB, an ECP5 EBR 2.25 KB: 10 pJ per 64-bit access, no FPGA factor (hard macro).

Activity counts (:func:`count_activity`) come from the command graph and the cycle figures:
MACs are the graph's (matvec and attention alike, one coefficient), DRAM bytes are the
cycle source's, and block-RAM accesses count 64-bit words moved through on-chip memories:
each DRAM byte read once into and once out of the read FIFOs, the MatVec activation buffer
read once per lane vector (``16 * lanes`` bits a cycle) and filled once per matvec,
activations through the scratchpad (when on chip), attention scores written once and read
twice (softmax, weighted sum).

Not modelled: clock-tree and control-logic toggling while busy (folded into ``static_w``
as a margin), DRAM refresh beyond the background power, I/O termination beyond pJ/bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .boards import BoardProfile, get_board
from .graph import OpGraph, OpKind

__all__ = ["EnergyCoefficients", "EnergyEstimate", "Activity", "ENERGY_PROFILES", "LABEL",
           "energy_coefficients", "count_activity", "estimate_energy"]

LABEL = "estimated (energy model: static power x time + per-activity dynamic energy)"

_HOROWITZ = "Horowitz, 'Computing's energy problem', ISSCC 2014, energy table (45 nm)"
_DDR3 = f"{_HOROWITZ}: DRAM 2.6 nJ per 64-bit access = 40.6 pJ/bit (DDR3, 1.5 V: upper end)"
_DDR4 = (f"{_HOROWITZ}: 2.6 nJ / 64 b = 40.6 pJ/bit, scaled by (1.2 V / 1.5 V)^2 for DDR4 "
         "= 26.0 pJ/bit (derived)")
_HBM2 = ("O'Connor et al., 'Fine-Grained DRAM: Energy-Efficient DRAM for Extreme Bandwidth "
         "Systems', MICRO 2017: HBM2 about 3.9 pJ/bit")
_SDR = (f"{_DDR3}; assumption: taken for the ULX3S SDR SDRAM too (3.3 V I/O, likely higher)")
_MAC = (f"{_HOROWITZ}: 8b mult 0.2 pJ x 2 (int8 x int16) + 32b add 0.1 pJ = 0.5 pJ; x 7.1 "
        "FPGA/ASIC dynamic power with hard blocks (Kuon and Rose, IEEE TCAD 2007) = 3.55 pJ")
_BRAM = f"{_HOROWITZ}: 8 KB SRAM 64-bit read 10 pJ; block RAM is a hard macro, no FPGA factor"


def _rec(value: float, source: str, assumption: bool) -> dict:
    return {"value": value, "source": source, "assumption": assumption}


#: Coefficients per board: ``{field: {value, source, assumption}}`` (see module docstring).
ENERGY_PROFILES: dict[str, dict[str, dict]] = {
    "pynq-z2": {
        "static_w": _rec(1.8, "assumption (XPE/UG440-style typical, not an XPE run): Zynq-7020 "
                         "PS with Linux ~1.4 W + PL leakage ~0.15 W + DDR3 x16 background "
                         "~0.15 W + regulators; measure with a USB power meter (no PMBus "
                         "on PYNQ-Z2)", True),
        "dram_pj_per_bit": _rec(40.6, _DDR3, False),
        "mac_pj": _rec(3.55, _MAC, False),
        "bram_pj_per_access": _rec(10.0, _BRAM, False),
    },
    "kv260": {
        "static_w": _rec(3.5, "assumption (XPE/UG440-style typical): K26 SOM, ZU5EV-class PS "
                         "(4x A53) with Linux ~2.3 W + PL leakage ~0.6 W + DDR4 x64 "
                         "background ~0.6 W; measure on the board", True),
        "dram_pj_per_bit": _rec(26.0, _DDR4, False),
        "mac_pj": _rec(3.55, _MAC, False),
        "bram_pj_per_access": _rec(10.0, _BRAM, False),
    },
    "zcu104": {
        "static_w": _rec(4.0, "assumption (XPE/UG440-style typical): ZU7EV PS with Linux "
                         "~2.5 W + PL leakage ~0.9 W + DDR4 x64 background ~0.6 W; measure "
                         "with pynq.get_rails() / DataRecorder (PMBus)", True),
        "dram_pj_per_bit": _rec(26.0, _DDR4, False),
        "mac_pj": _rec(3.55, _MAC, False),
        "bram_pj_per_access": _rec(10.0, _BRAM, False),
    },
    "u280": {
        "static_w": _rec(25.0, "assumption: Alveo U280 card idle with shell and HBM2 "
                         "(XU280 leakage + HBM background + card regulators); measure with "
                         "xbutil / the card's power sensors", True),
        "dram_pj_per_bit": _rec(3.9, _HBM2, False),
        "mac_pj": _rec(3.55, _MAC, False),
        "bram_pj_per_access": _rec(10.0, _BRAM, False),
    },
    "ulx3s-85f": {
        "static_w": _rec(0.5, "assumption: ECP5-85F static ~0.1 W (Lattice power calculator "
                         "style) + SDRAM ~0.1 W + board regulators and ESP32 idle", True),
        "dram_pj_per_bit": _rec(40.6, _SDR, True),
        "mac_pj": _rec(3.55, _MAC, False),
        "bram_pj_per_access": _rec(10.0, _BRAM, False),
    },
}

_FIELDS = ("static_w", "dram_pj_per_bit", "mac_pj", "bram_pj_per_access")


@dataclass(frozen=True)
class EnergyCoefficients:
    """One board's coefficients (W, pJ/bit, pJ/MAC, pJ per 64-bit block-RAM access)."""

    board: str
    static_w: float
    dram_pj_per_bit: float
    mac_pj: float
    bram_pj_per_access: float
    sources: dict
    assumptions: frozenset

    def to_dict(self) -> dict:
        return {"board": self.board, **{f: getattr(self, f) for f in _FIELDS},
                "sources": dict(self.sources), "assumptions": sorted(self.assumptions)}


def energy_coefficients(board: str | BoardProfile) -> EnergyCoefficients:
    """The coefficients of ``board`` (a name or a :class:`BoardProfile`)."""
    name = board.name if isinstance(board, BoardProfile) else get_board(board).name
    if name not in ENERGY_PROFILES:
        raise ValueError(f"no energy profile for board {name!r}; profiles: "
                         f"{', '.join(ENERGY_PROFILES)}")
    rec = ENERGY_PROFILES[name]
    return EnergyCoefficients(
        board=name, **{f: float(rec[f]["value"]) for f in _FIELDS},
        sources={f: rec[f]["source"] for f in _FIELDS},
        assumptions=frozenset(f for f in _FIELDS if rec[f]["assumption"]))


@dataclass(frozen=True)
class Activity:
    """What one decode step does: time and the counts the dynamic terms multiply."""

    seconds: float
    dram_bytes: int
    macs: int
    bram_accesses: int

    def __post_init__(self):
        for f in ("seconds", "dram_bytes", "macs", "bram_accesses"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{f} must be a finite non-negative number, not {v!r}")


def _words64(nbytes: float) -> int:
    return math.ceil(nbytes / 8)


def count_activity(graph: OpGraph, *, cycles_per_token: float, fmax_mhz: float,
                   dram_bytes: int, lanes: int, memory: str = "reuse") -> Activity:
    """Activity of one step of ``graph`` (fused as it will run) at ``fmax_mhz``.

    ``dram_bytes`` and ``cycles_per_token`` come from the cycle source (model or RTL);
    ``memory`` is the cycle model's mode (``"dram"``: activations do not pass through the
    scratchpad, their bytes are already in ``dram_bytes``).
    """
    if cycles_per_token <= 0 or fmax_mhz <= 0 or lanes < 1:
        raise ValueError("cycles_per_token, fmax_mhz and lanes must be positive")
    words = _words64(dram_bytes) * 2                       # read FIFO in, FIFO out
    for node in graph.nodes:
        for part in node.parts or (node,):
            if part.kind in (OpKind.MATVEC, OpKind.CLASSIFIER):
                (w,) = part.weights
                vectors = w.rows * math.ceil(w.cols_padded / lanes)
                words += _words64(vectors * 16 * lanes / 8)          # x buffer reads
                words += _words64(w.cols_padded * 2)                 # x buffer fill
            elif part.kind is OpKind.ATTENTION_SCORES:
                scores = part.macs // max(1, graph.args.head_size if graph.args else 1)
                words += 3 * _words64(scores * 4)                    # write, 2 reads
        if memory != "dram":
            act = [t for t in node.inputs + node.outputs if t.space == "act"]
            words += sum(_words64(t.nbytes) for t in act)            # scratchpad traffic
    return Activity(seconds=cycles_per_token / (fmax_mhz * 1e6), dram_bytes=int(dram_bytes),
                    macs=int(graph.macs_per_token), bram_accesses=int(words))


@dataclass(frozen=True)
class EnergyEstimate:
    """Joules of one token, split by term (all estimated)."""

    board: str
    static_j: float
    dram_j: float
    mac_j: float
    bram_j: float
    seconds: float
    label: str = LABEL

    @property
    def dynamic_j(self) -> float:
        return self.dram_j + self.mac_j + self.bram_j

    @property
    def j_per_token(self) -> float:
        return self.static_j + self.dynamic_j

    @property
    def tokens_per_j(self) -> float:
        return 1.0 / self.j_per_token

    @property
    def average_power_w(self) -> float:
        return self.j_per_token / self.seconds

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(dynamic_j=self.dynamic_j, j_per_token=self.j_per_token,
                 tokens_per_j=self.tokens_per_j, average_power_w=self.average_power_w)
        return d


def estimate_energy(activity: Activity, board: str | BoardProfile | EnergyCoefficients
                    ) -> EnergyEstimate:
    """Energy of one token with ``activity`` on ``board`` (see the module docstring)."""
    c = board if isinstance(board, EnergyCoefficients) else energy_coefficients(board)
    if activity.seconds <= 0:
        raise ValueError("activity.seconds must be positive")
    return EnergyEstimate(
        board=c.board,
        static_j=c.static_w * activity.seconds,
        dram_j=c.dram_pj_per_bit * 1e-12 * 8 * activity.dram_bytes,
        mac_j=c.mac_pj * 1e-12 * activity.macs,
        bram_j=c.bram_pj_per_access * 1e-12 * activity.bram_accesses,
        seconds=activity.seconds)
