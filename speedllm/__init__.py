"""speedllm: an open FPGA accelerator co-design toolkit for Llama2-family inference.

Subpackages (each a top-level folder of the repository):

- ``speedllm.golden``: checkpoints, the float reference (= llama2.c ``run.c``), the
  numeric formats and the integer golden model (the hardware's arithmetic).
- ``speedllm.ops``: op graph, fusion, memory plan, command program.
- ``speedllm.hw``: Amaranth components.
- ``speedllm.sim``: cocotb testbenches and the Verilator harness.
- ``speedllm.host``: PYNQ driver and the inference API.
- ``speedllm.bitstreams``: board targets.
"""

from .errors import SpeedLLMError

__version__ = "0.1.0"
__all__ = ["SpeedLLMError", "__version__", "load"]


def load(model, tokenizer="tokenizer.bin", backend="golden", **options):
    """Load a model on a backend: :func:`speedllm.host.api.load` (imported on first use)."""
    from .host.api import load as _load
    return _load(model, tokenizer, backend, **options)
