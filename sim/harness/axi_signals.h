// Plain structs for the AXI signals the harness exchanges with the Verilated top.
//
// The generated header harness_ports.h (written by speedllm.sim.harness from the top's port
// list) copies the DUT's outputs into these structs before every rising edge and drives the
// structs' inputs back after it. Wide buses (data, strobes) are copied only on a handshake
// or when a new beat is offered, through the generated get_wdata / set_rdata functions.
#pragma once
#include <cstdint>

namespace harness {

// What an AXI4 master port of the DUT drives (control and address fields only).
struct MasterOut {
    uint64_t araddr = 0, awaddr = 0;
    uint32_t arid = 0, awid = 0;
    uint8_t arlen = 0, arsize = 0, arburst = 1, arvalid = 0;
    uint8_t awlen = 0, awsize = 0, awburst = 1, awvalid = 0;
    uint8_t rready = 0, wvalid = 0, wlast = 0, bready = 0;
};

// What the DRAM model drives back into an AXI4 master port (rdata goes separately).
struct MasterIn {
    uint32_t rid = 0, bid = 0;
    uint8_t arready = 0, rvalid = 0, rlast = 0, rresp = 0;
    uint8_t awready = 0, wready = 0, bvalid = 0, bresp = 0;
};

// What the DUT's AXI4-Lite slave port drives.
struct LiteOut {
    uint64_t rdata = 0;
    uint8_t awready = 0, wready = 0, bvalid = 0, bresp = 0;
    uint8_t arready = 0, rvalid = 0, rresp = 0;
};

// What the harness's AXI4-Lite master drives into the DUT.
struct LiteIn {
    uint64_t awaddr = 0, wdata = 0, araddr = 0;
    uint32_t wstrb = 0;
    uint8_t awvalid = 0, wvalid = 0, bready = 0, arvalid = 0, rready = 0;
};

// Static facts about one AXI4 master port, from the port description.
struct MasterPortInfo {
    const char* name;
    bool has_read, has_write;
    uint32_t data_bytes;   // bus width in bytes
};

constexpr uint8_t RESP_OKAY = 0, RESP_SLVERR = 2, RESP_DECERR = 3;
constexpr uint8_t BURST_INCR = 1;

}  // namespace harness
