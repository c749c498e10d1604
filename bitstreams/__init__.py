"""speedllm.bitstreams: board targets and their builds.

* :mod:`.targets` -- the targets (pynq-z2, kv260, zcu104, ulx3s-85f), the designs that can
  be built (``accel``, the accelerator top, by default; ``dma_copy``, a small test design)
  and the bus interface any such ``wiring.Component`` must have.
* :mod:`.vivado` -- Vivado project scripts for the Zynq boards (IP packaging, block design
  with the AXI masters grouped onto the PS's four HP ports, bitstream, ``.hwh``), run by
  the user with ``build.sh``.
* :mod:`.ecp5` -- the open ECP5 flow (YoWASP yosys / nextpnr / ecppack), run here.

``boards.json`` holds the board profiles (:mod:`speedllm.ops.boards`). Submodules are not
imported here, so importing the package stays cheap.
"""
