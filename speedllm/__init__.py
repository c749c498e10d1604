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
__all__ = ["SpeedLLMError", "__version__"]
