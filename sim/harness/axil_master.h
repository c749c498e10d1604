// AXI4-Lite master: one register read or write at a time, driven a cycle at a time by the
// harness main loop (a Moore machine like the DRAM model: update() sees this cycle's
// handshakes and sets what is driven next cycle).
//
// A write raises AWVALID and WVALID together, drops each on its handshake, and keeps BREADY
// high; a read raises ARVALID and keeps RREADY high. With a slave that answers in one cycle
// a write takes 3 cycles and a read 2-3.
#pragma once
#include <cstdint>

#include "axi_signals.h"

namespace harness {

class AxiLiteMaster {
  public:
    enum State { IDLE, WRITE, READ, DONE };

    void start_write(uint64_t addr, uint64_t data, uint32_t strb) {
        in_ = LiteIn{};
        in_.awaddr = addr;
        in_.wdata = data;
        in_.wstrb = strb;
        in_.awvalid = in_.wvalid = 1;
        in_.bready = 1;
        state_ = WRITE;
    }

    void start_read(uint64_t addr) {
        in_ = LiteIn{};
        in_.araddr = addr;
        in_.arvalid = 1;
        in_.rready = 1;
        state_ = READ;
    }

    // Drop a transfer that timed out; the slave may still answer later.
    void abandon() { in_ = LiteIn{}; state_ = IDLE; }

    void update(const LiteOut& out) {
        if (state_ == WRITE) {
            if (in_.awvalid && out.awready) in_.awvalid = 0;
            if (in_.wvalid && out.wready) in_.wvalid = 0;
            if (in_.bready && out.bvalid) {
                resp_ = out.bresp;
                in_.bready = 0;
                state_ = DONE;
            }
        } else if (state_ == READ) {
            if (in_.arvalid && out.arready) in_.arvalid = 0;
            if (in_.rready && out.rvalid) {
                resp_ = out.rresp;
                rdata_ = out.rdata;
                in_.rready = 0;
                state_ = DONE;
            }
        }
    }

    State state() const { return state_; }
    void finish() { state_ = IDLE; }
    const LiteIn& in() const { return in_; }
    uint8_t resp() const { return resp_; }
    uint64_t rdata() const { return rdata_; }

  private:
    LiteIn in_{};
    State state_ = IDLE;
    uint8_t resp_ = 0;
    uint64_t rdata_ = 0;
};

}  // namespace harness
