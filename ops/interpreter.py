"""The golden interpreter: what each hardware command must produce, bit for bit.

:class:`Interpreter` executes a command program on its own copy of a DRAM image and a
scratchpad model. It decodes only the command words (:func:`speedllm.ops.isa.decode`)
and reads and writes only the image and the scratchpad, in the byte formats of
:mod:`speedllm.ops.dram_format`; the arithmetic of every command is the golden
:mod:`speedllm.golden.intops` / :mod:`speedllm.golden.formats` functions. It knows nothing
of the checkpoint: dims, addresses, exponents and table sizes all come from the commands.

The per-step registers are ``token`` and ``pos`` (:meth:`Interpreter.step`). A hook
called after every command with ``(index, command, writes)`` (``writes``: the
``(space, addr, bytes)`` the command wrote, ``space`` ``"scratchpad"`` or ``"dram"``) lets
an RTL comparison find the first command where the two sides part; :meth:`step` with
``trace=True`` collects them.
"""

from __future__ import annotations

import numpy as np

from speedllm.golden import formats as F
from speedllm.golden import intops as ops

from . import dram_format as D
from .isa import Epilogue, Flag, Opcode, decode_program

SCRATCHPAD = "scratchpad"
STORE_ALIGN = 8     # = speedllm.ops.memplan.DEFAULT_ALIGN: results are stored in whole beats
DRAM = "dram"


class Interpreter:
    """Runs a program's commands on a copy of its DRAM image.

    Parameters
    ----------
    words : bytes
        The command stream (``Program.words``).
    image : array-like of uint8
        The DRAM image (copied; ``self.image`` is the interpreter's DRAM).
    scratchpad_bytes : int
        Size of the scratchpad model (``Program.scratchpad_bytes``).
    store_align : int
        Results are written zero-padded to a multiple of this (``Program.plan.align``:
        one bus beat, as the hardware writes them).
    """

    def __init__(self, words: bytes, image, scratchpad_bytes: int,
                 store_align: int = STORE_ALIGN):
        self.store_align = int(store_align)
        self.commands = decode_program(bytes(words))
        self._initial = np.array(image, dtype=np.uint8, copy=True)
        self.image = self._initial.copy()
        self.scratchpad = np.zeros(max(int(scratchpad_bytes), 0), np.uint8)
        self._writes: list | None = None

    @classmethod
    def from_program(cls, program) -> "Interpreter":
        return cls(program.words, program.image, program.scratchpad_bytes, program.plan.align)

    def reset(self) -> None:
        """Back to the initial image (KV cache zero) and a zeroed scratchpad."""
        self.image[:] = self._initial
        self.scratchpad[:] = 0

    # ---- memory access --------------------------------------------------------------
    def _space(self, cmd, dram: bool = False):
        if dram or cmd.flags & Flag.ACT_IN_DRAM:
            return DRAM, self.image
        return SCRATCHPAD, self.scratchpad

    def _write(self, space_mem, addr: int, data: bytes) -> None:
        space, mem = space_mem
        if addr < 0 or addr + len(data) > mem.size:
            raise IndexError(f"write of {len(data)} bytes at 0x{addr:x} outside the "
                             f"{mem.size}-byte {space}")
        mem[addr:addr + len(data)] = np.frombuffer(data, np.uint8)
        if self._writes is not None:
            self._writes.append((space, addr, bytes(data)))

    def _read_act(self, cmd, addr: int, n: int) -> np.ndarray:
        return D.read_act(self._space(cmd)[1], addr, n)

    def _read_x16(self, cmd, addr: int, n: int):
        return D.read_x16(self._space(cmd)[1], addr, n)

    def _store(self, cmd, y, dram: bool = False) -> None:
        """Write ACT result ``y`` to dst0, as X16 when the command says so, zero-padded to a
        multiple of ``store_align`` bytes (the memory plan's alignment, one bus beat) (the hardware writes whole 64-bit beats; the memory
        plan sizes every tensor to a multiple of it, so the padding never reaches another
        tensor)."""
        data = (D.x16_bytes(*F.quantize_act(y)) if cmd.flags & Flag.DST_X16
                else D.act_bytes(y))
        data += bytes(-len(data) % self.store_align)
        self._write(self._space(cmd, dram), cmd.dst0, data)

    def _table(self, addr: int, bits: int, per_unit: int = 1) -> np.ndarray:
        return D.read_int32(self.image, addr, per_unit * (1 << bits) + 1)

    def _kv_rows(self, cmd, addr: int, rows: int):
        return D.read_kv_rows(self.image, addr, rows, cmd.n_kv_heads, cmd.head_size,
                              cmd.kv_bits, cmd.kv_row_bytes)

    def _rope_row(self, cmd, pos: int) -> ops.RopeTables:
        c, s = D.read_rope_row(self.image, cmd.tab_addr, pos, cmd.head_size)
        return ops.RopeTables(c[None, :], s[None, :])     # row 0 = position pos

    def _kv_write(self, cmd, k, v, pos: int) -> None:
        kv_dim = cmd.n_kv_heads * cmd.head_size
        if not len(k) == len(v) == kv_dim or \
                cmd.kv_row_bytes < cmd.n_kv_heads + kv_dim * cmd.kv_bits // 8:
            raise ValueError(f"KV write of {len(k)}/{len(v)} values does not match "
                             f"{cmd.n_kv_heads} heads x {cmd.head_size} in a "
                             f"{cmd.kv_row_bytes}-byte row")
        frac = cmd.kv_frac if cmd.flags & Flag.KV_FIXED else None
        for vec, base in ((k, cmd.k_addr), (v, cmd.v_addr)):
            st = ops.kv_store(vec, cmd.n_kv_heads, cmd.kv_bits, frac)
            row = ops.KvStore(st.mant[None], st.exp[None])
            self._write((DRAM, self.image), base + pos * cmd.kv_row_bytes,
                        D.kv_rows_bytes(row, cmd.kv_bits, cmd.kv_row_bytes))

    # ---- commands -------------------------------------------------------------------
    def _matrix(self, cmd, first_row: int, rows: int, scale_exp: int, *, stride: int = 1):
        """Rows ``first_row, first_row + stride, ...`` (``rows`` of them) of the command's
        W8 matrix."""
        cp = F.padded_cols(cmd.cols, cmd.group_size)
        ng = cp // cmd.group_size
        if stride == 1:
            return D.read_matrix(self.image, cmd.w_addr + first_row * cp,
                                 cmd.s_addr + first_row * ng * 2, rows, cmd.cols,
                                 cmd.group_size, scale_exp)
        full = D.read_matrix(self.image, cmd.w_addr, cmd.s_addr, cmd.rows, cmd.cols,
                             cmd.group_size, scale_exp)
        return F.QuantizedMatrix(q=np.ascontiguousarray(full.q[first_row::stride]),
                                 scale_m=np.ascontiguousarray(full.scale_m[first_row::stride]),
                                 scale_exp=scale_exp, cols=cmd.cols, group_size=cmd.group_size)

    def _matvec(self, cmd, pos: int) -> None:
        if cmd.flags & Flag.NORM_PROLOGUE:
            x = self._read_act(cmd, cmd.src0, cmd.cols)
            gains = D.read_int32(self.image, cmd.aux_addr, cmd.cols)
            xn = ops.rmsnorm(x, gains, self._table(cmd.norm_tab_addr, cmd.norm_tab_bits, 3))
            x16, e = F.quantize_act(xn)
        else:
            x16, e = self._read_x16(cmd, cmd.src0, cmd.cols)
        ep = Epilogue(cmd.epilogue)
        if ep is Epilogue.ROPE_KV:
            nq = cmd.rows_a
            nk = (cmd.rows - nq) // 2
            q, k, v = (F.matvec(self._matrix(cmd, r0, n, se), x16, e) for r0, n, se in
                       ((0, nq, cmd.scale_exp0), (nq, nk, cmd.scale_exp1),
                        (nq + nk, nk, cmd.scale_exp2)))
            rt = self._rope_row(cmd, pos)
            q = ops.rope(q, 0, cmd.head_size, rt)
            k = ops.rope(k, 0, cmd.head_size, rt)
            self._kv_write(cmd, k, v, pos)
            y = q
        elif ep is Epilogue.SWIGLU_PAIR:
            n = cmd.rows // 2
            h1 = F.matvec(self._matrix(cmd, 0, n, cmd.scale_exp0, stride=2), x16, e)
            h3 = F.matvec(self._matrix(cmd, 1, n, cmd.scale_exp1, stride=2), x16, e)
            y = ops.swiglu(h1, h3, self._table(cmd.tab_addr, cmd.tab_bits))
        else:
            y = F.matvec(self._matrix(cmd, 0, cmd.rows, cmd.scale_exp0), x16, e)
            if ep is Epilogue.RESIDUAL:
                y = ops.residual_add(self._read_act(cmd, cmd.src1, cmd.rows), y)
        self._store(cmd, y, dram=cmd.opcode == Opcode.CLASSIFIER)

    def _attention_heads(self, cmd):
        """The kv head each query head reads (grouped-query attention)."""
        return np.arange(cmd.n_heads) // (cmd.n_heads // cmd.n_kv_heads)

    def _execute(self, cmd, token: int, pos: int) -> None:
        op = Opcode(cmd.opcode)
        T = pos + 1
        if op in (Opcode.MATVEC, Opcode.CLASSIFIER):
            self._matvec(cmd, pos)
        elif op is Opcode.EMBED:
            if not 0 <= token < cmd.rows:
                raise IndexError(f"token {token} outside the {cmd.rows}-row table")
            row = D.read_matrix_row(self.image, cmd.w_addr, cmd.s_addr, token, cmd.cols,
                                    cmd.group_size, cmd.scale_exp0)
            self._store(cmd, ops.embedding(row, 0))
        elif op is Opcode.RMSNORM:
            x = self._read_act(cmd, cmd.src0, cmd.rows)
            gains = D.read_int32(self.image, cmd.aux_addr, cmd.rows)
            self._store(cmd, ops.rmsnorm(x, gains, self._table(cmd.norm_tab_addr,
                                                                 cmd.norm_tab_bits, 3)))
        elif op is Opcode.ROPE:
            x = self._read_act(cmd, cmd.src0, cmd.rows)
            self._store(cmd, ops.rope(x, 0, cmd.head_size, self._rope_row(cmd, pos)))
        elif op is Opcode.KV_WRITE:
            self._kv_write(cmd, self._read_act(cmd, cmd.src0, cmd.rows),
                           self._read_act(cmd, cmd.src1, cmd.rows), pos)
        elif op is Opcode.ATTENTION:
            q = self._read_act(cmd, cmd.src0, cmd.rows)
            kc, vc = self._kv_rows(cmd, cmd.k_addr, T), self._kv_rows(cmd, cmd.v_addr, T)
            self._store(cmd, ops.attention(q, kc, vc, pos, cmd.n_heads, cmd.n_kv_heads,
                                           cmd.head_size, self._table(cmd.tab_addr,
                                                                      cmd.tab_bits)))
        elif op is Opcode.ATT_SCORES:
            # pass 1 of intops.attention: scores [n_heads, T] as ACT
            q = self._read_act(cmd, cmd.src0, cmd.rows)
            q16, eq = ops.attention_query(q, cmd.n_heads, cmd.head_size)
            s = ops.attention_scores(q16, eq, self._kv_rows(cmd, cmd.k_addr, T),
                                     self._attention_heads(cmd))
            self._store(cmd, s.reshape(-1))
        elif op is Opcode.SOFTMAX:
            # unnormalized weights exp(s - max) (Q1.16); ATT_SUM divides by their sum
            s = self._read_act(cmd, cmd.src0, cmd.n_heads * T).astype(np.int64)
            s = s.reshape(cmd.n_heads, T)
            e = ops.exp_neg(s - s.max(axis=1, keepdims=True), self._table(cmd.tab_addr,
                                                                           cmd.tab_bits))
            self._store(cmd, e.reshape(-1))
        elif op is Opcode.ATT_SUM:
            e = self._read_act(cmd, cmd.src0, cmd.n_heads * T).astype(np.int64)
            e = e.reshape(cmd.n_heads, T)
            v = ops.kv_load(self._kv_rows(cmd, cmd.v_addr, T))[:, self._attention_heads(cmd), :]
            acc = np.einsum("ht,thd->hd", e, v)
            self._store(cmd, ops.attention_normalize(acc, e.sum(axis=1)).reshape(-1))
        elif op is Opcode.RESIDUAL:
            self._store(cmd, ops.residual_add(self._read_act(cmd, cmd.src0, cmd.rows),
                                              self._read_act(cmd, cmd.src1, cmd.rows)))
        elif op is Opcode.SWIGLU:
            self._store(cmd, ops.swiglu(self._read_act(cmd, cmd.src0, cmd.rows),
                                        self._read_act(cmd, cmd.src1, cmd.rows),
                                        self._table(cmd.tab_addr, cmd.tab_bits)))
        else:
            raise ValueError(f"no semantics for opcode {op.name}")

    def step(self, token: int, pos: int, hook=None, trace: bool = False):
        """Run the program once with registers ``token`` and ``pos``.

        Returns the ACT (int32) logits the last CLASSIFIER wrote, or, with
        ``trace=True``, ``(logits, [writes of each command])``.
        """
        logits_at = None
        log: list = []
        for i, cmd in enumerate(self.commands):
            if cmd.opcode == Opcode.END:
                break
            self._writes = [] if (hook is not None or trace) else None
            self._execute(cmd, int(token), int(pos))
            if cmd.opcode == Opcode.CLASSIFIER:
                logits_at = (cmd.dst0, cmd.rows)
            if trace:
                log.append(self._writes)
            if hook is not None:
                hook(i, cmd, self._writes)
        self._writes = None
        if logits_at is None:
            raise ValueError("the program has no CLASSIFIER command")
        logits = D.read_act(self.image, *logits_at).copy()
        return (logits, log) if trace else logits

    def kv_cache(self, k_addr: int, v_addr: int, rows: int, n_kv_heads: int, head_size: int,
                 kv_bits: int, row_bytes: int):
        """Decode ``rows`` K and V rows of a layer from the image (for comparisons)."""
        return tuple(D.read_kv_rows(self.image, a, rows, n_kv_heads, head_size, kv_bits,
                                    row_bytes) for a in (k_addr, v_addr))
