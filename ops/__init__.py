"""speedllm.ops: the decode step as an op graph, fusion rules, memory plan.

- :mod:`.graph`: :func:`build_graph` (run.c's forward as nodes), work figures.
- :mod:`.fusion`: :class:`FusionConfig`, :func:`fuse`, :func:`fusion_report`, :func:`ablation`.
- :mod:`.memplan`: :func:`plan_memory`, :func:`verify_plan`, :func:`memory_report`.
- :mod:`.isa`: the command set (one field table -> encoder, decoder, RTL layout).
- :mod:`.dram_format`: the byte layouts of the DRAM image (the one place they are defined).
- :mod:`.compiler`: :func:`compile_model` -> :class:`Program` (command words + DRAM image).
- :mod:`.interpreter`: :class:`Interpreter`, the golden interpreter of a program.

``python -m speedllm.ops`` prints the analytical figures as JSON.
"""

from .compiler import Program, compile_model
from .fusion import FusionConfig, ablation, ablation_configs, fuse, fusion_report
from .graph import (ACT, LOGITS, MODEL_SHAPES, X16, Node, OpGraph, OpKind, Tensor,
                    TensorFormat, WeightRef, build_graph, kv_format)
from .interpreter import Interpreter
from .memplan import (LiveInterval, MemoryPlan, PlanError, live_intervals, memory_report,
                      plan_memory, verify_plan)

__all__ = [
    "ACT", "LOGITS", "MODEL_SHAPES", "X16", "Node", "OpGraph", "OpKind", "Tensor",
    "TensorFormat", "WeightRef", "build_graph", "kv_format",
    "FusionConfig", "ablation", "ablation_configs", "fuse", "fusion_report",
    "LiveInterval", "MemoryPlan", "PlanError", "live_intervals", "memory_report",
    "plan_memory", "verify_plan", "Program", "compile_model", "Interpreter",
]
