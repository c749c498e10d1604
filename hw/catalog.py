"""The components that ``speedllm hw-report`` measures: name -> factory with default
parameters.

Adding a component is one line in :data:`CATALOG`::

    "matvec": Entry("speedllm.hw.matvec", "MatVecEngine", lanes=8),

The module is imported only when the entry is built, so a broken or missing module only
affects its own entry.

:data:`TOPS` holds the whole accelerator at model-sized configurations. They take many
minutes per tool run, so they are measured only when named (``speedllm hw-report
--component accel_top_15m``), never as part of "all components".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

__all__ = ["Entry", "CATALOG", "TOPS", "lookup", "build"]


@dataclass(frozen=True)
class Entry:
    """``module.factory(*args, **kwargs)`` builds the component."""
    module: str
    factory: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __init__(self, module: str, factory: str, *args, **kwargs):
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "factory", factory)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)

    def build(self):
        return getattr(importlib.import_module(self.module), self.factory)(*self.args,
                                                                           **self.kwargs)

    def describe(self) -> str:
        params = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.module}.{self.factory}({', '.join(params)})"


def _demo_registers():
    """A register map of the size a real accelerator uses, for the AXI-Lite slave."""
    from .axil import AxiLiteRegisters
    from .csr import Field, Register, RegisterMap

    class Word(Register):
        """A 32-bit read-write value."""
        value = Field(32, "rw")

    class Status(Register):
        """Read-only status and sticky flags."""
        busy = Field(1, "r")
        error = Field(4, "w1c", offset=4)
        count = Field(16, "r", offset=16)

    regmap = RegisterMap("demo")
    for k in range(12):
        regmap.add(f"word{k}", Word)
    regmap.add("status", Status)
    return AxiLiteRegisters(regmap)


CATALOG: dict[str, Entry] = {
    "stream_fifo_64x16": Entry("speedllm.hw.stream", "StreamFifo", 64, 16),
    "stream_fifo_64x512": Entry("speedllm.hw.stream", "StreamFifo", 64, 512),
    "axil_registers_13": Entry("speedllm.hw.catalog", "_demo_registers"),
    "axi_read_master_64": Entry("speedllm.hw.axi_read", "AxiReadMaster", data_width=64),
    "axi_read_master_128": Entry("speedllm.hw.axi_read", "AxiReadMaster", data_width=128),
    "axi_write_master_64": Entry("speedllm.hw.axi_write", "AxiWriteMaster", data_width=64),
    "matvec_l8": Entry("speedllm.hw.matvec", "MatVecEngine", lanes=8),
    "matvec_l16": Entry("speedllm.hw.matvec", "MatVecEngine", lanes=16),
    "attention_260k": Entry("speedllm.hw.attention", "AttentionCore", head_size=8, n_heads=8,
                            n_kv_heads=4, max_seq_len=512),
    "residual_add": Entry("speedllm.hw.residual", "ResidualAdd"),
    "embedding_l8": Entry("speedllm.hw.embedding", "EmbeddingFetch", lanes=8, group_size=32),
    "scratchpad_4x512": Entry("speedllm.hw.scratchpad", "Scratchpad", banks=4, depth=512,
                              width=32),
    "rmsnorm_2048": Entry("speedllm.hw.rmsnorm", "RmsNormUnit", max_dim=2048),
    "rope_260k": Entry("speedllm.hw.rope", "RopeUnit", head_size=8, seq_len=512),
    "swiglu": Entry("speedllm.hw.swiglu", "SwiGluUnit"),
    "act_to_x16_2048": Entry("speedllm.hw.x16_quantize", "ActToX16", max_n=2048),
    "kv_row_writer_260k": Entry("speedllm.hw.kv_row_writer", "KvRowWriter", 4, 8),
}


def accel_top(shape: str):
    """The accelerator top configured for a model shape of
    :data:`speedllm.ops.graph.MODEL_SHAPES` (stories260K: :data:`~.accel_top.TOP_CONFIG`),
    the configuration the rtl backend and ``bench --source rtl`` build for it."""
    from speedllm.host.rtl import hardware_config_for
    from speedllm.ops.graph import MODEL_SHAPES
    from .accel_top import TOP_CONFIG, AcceleratorTop
    config = TOP_CONFIG if shape == "stories260K" else hardware_config_for(MODEL_SHAPES[shape])
    return AcceleratorTop(config)


TOPS: dict[str, Entry] = {
    "accel_top_260k": Entry("speedllm.hw.catalog", "accel_top", "stories260K"),
    "accel_top_15m": Entry("speedllm.hw.catalog", "accel_top", "stories15M"),
}


def lookup(name: str) -> Entry:
    """The entry ``name`` of :data:`CATALOG` or :data:`TOPS` (``KeyError`` otherwise)."""
    return CATALOG[name] if name in CATALOG else TOPS[name]


def build(name: str):
    """A fresh component of the catalogue entry ``name`` (a component or a whole top)."""
    return lookup(name).build()
