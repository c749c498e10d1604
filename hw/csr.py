"""A small register-map builder: registers as classes, one map for hardware and host.

Declare each 32-bit register as a class with its fields (low bits first) and an access
mode per field; the class docstring gets a drawing of the bit layout appended::

    class Status(csr.Register):
        \"\"\"Accelerator status.\"\"\"
        busy = csr.Field(1, "r")
        error = csr.Field(1, "w1c")
        code = csr.Field(2, "r", offset=4)

    regmap = csr.RegisterMap()
    regmap.add("ctrl", Ctrl)            # next free address, 4-byte aligned
    regmap.add("status", Status)
    regmap.offsets()  # {"ctrl": 0, "status": 4}

Field access modes:

=======  ==============================  ==========================================
access   bus side                        hardware side (ports of ``regmap.signature()``)
=======  ==============================  ==========================================
``rw``   read and write (byte strobes)   ``<reg>.<field>``: Out, the stored value
``r``    read only (writes ignored)      ``<reg>.<field>``: In, the value to read
``w1c``  read; writing 1 clears a bit    ``<reg>.<field>_set``: In, bits to set (set wins
                                         over a clear in the same cycle);
                                         ``<reg>.<field>``: Out, the flags
``w1p``  reads 0; writing 1 pulses       ``<reg>.<field>``: Out, high for one cycle
=======  ==============================  ==========================================

The same map exports the offsets to the host (:meth:`RegisterMap.offsets`,
:meth:`RegisterMap.to_json`, :meth:`RegisterMap.to_python`), so host code never types
a hex offset. :class:`speedllm.hw.axil.AxiLiteRegisters` serves a map on AXI4-Lite.
"""

from __future__ import annotations

import json

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Field", "Register", "RegisterMap", "ACCESS_MODES"]

ACCESS_MODES = ("rw", "r", "w1c", "w1p")
WIDTH = 32


class Field:
    """A field of a register: ``width`` bits with an ``access`` mode and reset value."""

    def __init__(self, width: int, access: str = "rw", *, init: int = 0, offset=None,
                 doc: str = ""):
        if not isinstance(width, int) or not 1 <= width <= WIDTH:
            raise ValueError(f"field width must be in 1..{WIDTH}, not {width!r}")
        if access not in ACCESS_MODES:
            raise ValueError(f"access must be one of {ACCESS_MODES}, not {access!r}")
        if not isinstance(init, int) or not 0 <= init < (1 << width):
            raise ValueError(f"init {init!r} does not fit in {width} bits")
        if access in ("r", "w1p") and init:
            raise ValueError(f"a field with access {access!r} has no init value")
        self.width, self.access, self.init, self.offset, self.doc = width, access, init, \
            offset, doc
        self.name = None

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.offset

    def __repr__(self):
        return f"Field({self.width}, {self.access!r}, offset={self.offset}, init={self.init})"


class Register:
    """Base class of a register: subclasses declare :class:`Field` class attributes."""

    fields: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fields, offset = {}, 0
        for name, value in list(vars(cls).items()):
            if not isinstance(value, Field):
                continue
            f = Field(value.width, value.access, init=value.init, offset=value.offset,
                      doc=value.doc)
            f.name = name
            f.offset = offset if value.offset is None else value.offset
            if f.offset < offset:
                raise ValueError(f"{cls.__name__}.{name}: offset {f.offset} overlaps the "
                                 f"previous field (next free bit {offset})")
            if f.offset + f.width > WIDTH:
                raise ValueError(f"{cls.__name__}.{name}: bits {f.offset}..."
                                 f"{f.offset + f.width - 1} do not fit in {WIDTH}")
            offset = f.offset + f.width
            fields[name] = f
        if not fields:
            raise ValueError(f"register {cls.__name__} has no fields")
        cls.fields = fields
        cls.__doc__ = (cls.__doc__ or cls.__name__).rstrip() + "\n\n" + cls.diagram() + "\n"

    @classmethod
    def diagram(cls) -> str:
        """The bit layout as a text table, high bits left (appended to the docstring)."""
        cells, bit = [], WIDTH
        for f in sorted(cls.fields.values(), key=lambda f: -f.offset):
            top = f.offset + f.width
            if top < bit:
                cells.append((f"{bit - 1}:{top}" if bit - 1 > top else f"{top}", "-", ""))
            rng = f"{top - 1}:{f.offset}" if f.width > 1 else f"{f.offset}"
            cells.append((rng, f.name, f.access))
            bit = f.offset
        if bit > 0:
            cells.append((f"{bit - 1}:0" if bit > 1 else "0", "-", ""))
        widths = [max(len(c) for c in cell) for cell in cells]
        rows = [" | ".join(c[k].ljust(w) for c, w in zip(cells, widths)) for k in range(3)]
        rule = "-+-".join("-" * w for w in widths)
        return "\n".join(["    " + rows[0], "    " + rule, "    " + rows[1], "    " + rows[2]])

    @classmethod
    def reset_value(cls) -> int:
        return sum(f.init << f.offset for f in cls.fields.values())

    @classmethod
    def hw_members(cls) -> dict:
        """Hardware-side members of this register (see the module table)."""
        members = {}
        for name, f in cls.fields.items():
            if f.access == "rw" or f.access == "w1c":
                members[name] = Out(f.width, init=f.init)
            elif f.access == "r":
                members[name] = In(f.width)
            else:
                members[name] = Out(f.width)
            if f.access == "w1c":
                members[name + "_set"] = In(f.width)
        return members


class RegisterMap:
    """Registers at 4-byte aligned byte offsets.

    Parameters
    ----------
    name : str
        Prefix of the exported constants (``to_python``).
    """

    def __init__(self, name: str = "regs"):
        self.name = name
        self._registers: dict[str, tuple[int, type]] = {}
        self._next = 0

    def add(self, name: str, register: type, *, offset: int | None = None) -> int:
        """Place ``register`` (a :class:`Register` subclass) at ``offset`` (default: the
        next free word); return the offset."""
        if not (isinstance(register, type) and issubclass(register, Register)):
            raise TypeError(f"{name}: expected a Register subclass, not {register!r}")
        if not name.isidentifier() or name in self._registers:
            raise ValueError(f"register name {name!r} is not a new identifier")
        offset = self._next if offset is None else offset
        if not isinstance(offset, int) or offset < 0 or offset % 4:
            raise ValueError(f"{name}: offset must be a multiple of 4, not {offset!r}")
        if offset in self.offsets().values():
            raise ValueError(f"{name}: offset {offset:#x} is taken")
        self._registers[name] = (offset, register)
        self._next = max(self._next, offset + 4)
        return offset

    def __iter__(self):
        """(name, offset, register class), in address order."""
        return iter(sorted(((n, o, r) for n, (o, r) in self._registers.items()),
                           key=lambda t: t[1]))

    def __len__(self):
        return len(self._registers)

    def offsets(self) -> dict[str, int]:
        """Register name -> byte offset."""
        return {n: o for n, (o, _) in self._registers.items()}

    @property
    def size(self) -> int:
        """Bytes spanned by the map (the last register's offset + 4)."""
        return self._next

    def signature(self) -> wiring.Signature:
        """Hardware-side ports: one member per register, one per field inside it."""
        return wiring.Signature({n: Out(wiring.Signature(r.hw_members())) for n, _, r in self})

    def describe(self) -> dict:
        """Everything the host needs, as plain data (what :meth:`to_json` writes)."""
        return {"name": self.name, "width": WIDTH, "registers": [
            {"name": n, "offset": o, "reset": r.reset_value(),
             "doc": (r.__doc__ or "").split("\n\n")[0].strip(),
             "fields": [{"name": f.name, "offset": f.offset, "width": f.width,
                         "access": f.access, "init": f.init, "doc": f.doc}
                        for f in r.fields.values()]}
            for n, o, r in self]}

    def to_json(self) -> str:
        return json.dumps(self.describe(), indent=1)

    def to_python(self) -> str:
        """A Python module of constants: ``<REG>`` offsets, ``<REG>_<FIELD>_SHIFT/_MASK``."""
        lines = [f'"""Register offsets of {self.name} (generated by speedllm.hw.csr; do not '
                 f'edit)."""', ""]
        for n, o, r in self:
            lines.append(f"{n.upper()} = {o:#06x}")
            for f in r.fields.values():
                key = f"{n.upper()}_{f.name.upper()}"
                lines.append(f"{key}_SHIFT = {f.offset}")
                lines.append(f"{key}_MASK = {f.mask:#010x}")
        return "\n".join(lines) + "\n"
