// The harness main loop and its C API (loaded by sim/harness.py through ctypes).
//
// One Harness owns a Verilated top (class Vtop, from `verilator --prefix Vtop`), a DRAM model
// on every AXI4 master port of the top, and an AXI4-Lite master on its control port. The
// port glue is generated per top into harness_ports.h (see speedllm.sim.harness), so this
// file is the same for every design. Every call runs many cycles in C++; Python never
// runs per cycle.
//
// The Verilated top is the wrapper sim/harness.py writes around the DUT: it registers
// every DUT input on the rising clock edge, so the DUT's logic is evaluated once a cycle
// (after the edge) rather than at every eval() (see input_register_wrapper in harness.py).
// A cycle (step()): sample the DUT's outputs with the clock low, let the DRAM model and
// the AXI-Lite master see this cycle's handshakes and decide their next outputs, drive
// those onto the wrapper's inputs, raise the clock (the DUT registers the handshakes and
// the wrapper passes the new inputs on), lower the clock. Inputs changed between cycles
// (reset, the start of an AXI-Lite transfer) are passed on at once by load_inputs().
#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "verilated.h"
#include "harness_ports.h"   // generated: Vtop.h and the port glue
#ifdef HARNESS_TRACE
#include "verilated_vcd_c.h"
#endif

#include "axil_master.h"
#include "dram_model.h"

using namespace harness;

namespace {

constexpr int kMasters = ports::kMasterPorts > 0 ? ports::kMasterPorts : 1;

struct Harness {
    std::unique_ptr<VerilatedContext> context;
    std::unique_ptr<Vtop> top;
    DramModel dram;
    AxiLiteMaster lite;
    uint64_t cycle = 0;
    MasterOut outs[kMasters];
    WriteBeat wbeats[kMasters];
    LiteOut lite_out;
#ifdef HARNESS_TRACE
    std::unique_ptr<VerilatedVcdC> trace;
#endif

    explicit Harness(const DramConfig& cfg)
        : context(new VerilatedContext), dram(cfg, ports::kMasterInfo, ports::kMasterPorts) {
#ifdef HARNESS_TRACE
        context->traceEverOn(true);
#endif
        top.reset(new Vtop{context.get(), "TOP"});
    }

    ~Harness() {
#ifdef HARNESS_TRACE
        if (trace) trace->close();
#endif
        top->final();
    }

    void dump() {
#ifdef HARNESS_TRACE
        if (trace) trace->dump(context->time());
        context->timeInc(1);
#endif
    }

    void step() {
        ports::sample_outputs(top.get(), outs, &lite_out);
        ports::capture_wdata(top.get(), dram, outs, wbeats);
        dram.update(cycle, outs, wbeats);
        lite.update(lite_out);
        ports::drive_masters(top.get(), dram);    // registered by the wrapper at the edge
        ports::drive_lite(top.get(), lite.in());
        ports::set_clock(top.get(), 1);
        top->eval();
        dump();
        ports::set_clock(top.get(), 0);
        top->eval();
        dump();
        ++cycle;
    }

    // Pass the wrapper's inputs on to the DUT now, without a clock edge.
    void load_inputs() {
        top->harness_load = 1;
        top->eval();
        top->harness_load = 0;
        top->eval();
    }

    void reset(uint32_t cycles) {
        lite.abandon();
        ports::set_reset(top.get(), 1);
        load_inputs();
        for (uint32_t i = 0; i < std::max<uint32_t>(cycles, 1); ++i) step();
        ports::set_reset(top.get(), 0);
        dram.reset_ports();
        ports::drive_masters(top.get(), dram);
        ports::drive_lite(top.get(), lite.in());
        load_inputs();
    }

    // Put what the AXI-Lite master drives onto the DUT now (after it started a transfer
    // between cycles), so this cycle's handshakes see it.
    void drive_lite_now() {
        ports::drive_lite(top.get(), lite.in());
        load_inputs();
    }

    // Run one AXI-Lite transfer just started; 0..3 = its response, or a negative code.
    int finish_transfer(uint64_t max_cycles) {
        drive_lite_now();
        for (uint64_t n = 0; n < max_cycles; ++n) {
            step();
            if (lite.state() == AxiLiteMaster::DONE) {
                lite.finish();
                return lite.resp();
            }
        }
        lite.abandon();
        drive_lite_now();
        return -1;
    }
};

Harness* cast(void* h) { return static_cast<Harness*>(h); }

}  // namespace

extern "C" {

// Mirrored by ctypes in sim/harness.py.
struct HarnessConfig {
    uint64_t dram_base, dram_size;
    double bytes_per_cycle;
    uint32_t read_latency, write_latency;
    uint32_t max_outstanding_reads, max_outstanding_writes;
    uint32_t reset_cycles;
};

enum { HARNESS_TIMEOUT = -1, HARNESS_BUS_ERROR = -2, HARNESS_NO_CONTROL_PORT = -3,
       HARNESS_OUT_OF_RANGE = -4 };

int harness_master_ports() { return ports::kMasterPorts; }
const char* harness_master_port_name(int p) {
    return p >= 0 && p < ports::kMasterPorts ? ports::kMasterInfo[p].name : nullptr;
}
int harness_has_control_port() { return ports::kHasLite; }

void* harness_create(const HarnessConfig* c) {
    DramConfig cfg;
    cfg.base = c->dram_base;
    cfg.size = c->dram_size;
    cfg.bytes_per_cycle = c->bytes_per_cycle;
    cfg.read_latency = c->read_latency;
    cfg.write_latency = c->write_latency;
    cfg.max_outstanding_reads = std::max<uint32_t>(c->max_outstanding_reads, 1);
    cfg.max_outstanding_writes = std::max<uint32_t>(c->max_outstanding_writes, 1);
    try {
        Harness* h = new Harness(cfg);
        h->reset(c->reset_cycles);
        return h;
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}

void harness_destroy(void* h) { delete cast(h); }

void harness_reset(void* h, uint32_t cycles) { cast(h)->reset(cycles); }

uint8_t* harness_dram(void* h) { return cast(h)->dram.memory(); }

int harness_dram_write(void* h, uint64_t addr, const void* src, uint64_t n) {
    const DramConfig& cfg = cast(h)->dram.config();
    if (addr < cfg.base || addr - cfg.base > cfg.size || n > cfg.size - (addr - cfg.base))
        return HARNESS_OUT_OF_RANGE;
    std::memcpy(cast(h)->dram.memory() + (addr - cfg.base), src, n);
    return 0;
}

int harness_dram_read(void* h, uint64_t addr, void* dst, uint64_t n) {
    const DramConfig& cfg = cast(h)->dram.config();
    if (addr < cfg.base || addr - cfg.base > cfg.size || n > cfg.size - (addr - cfg.base))
        return HARNESS_OUT_OF_RANGE;
    std::memcpy(dst, cast(h)->dram.memory() + (addr - cfg.base), n);
    return 0;
}

// Register write: the BRESP (0..3), or HARNESS_TIMEOUT after max_cycles.
int harness_reg_write(void* h, uint64_t addr, uint64_t data, uint32_t strb,
                      uint64_t max_cycles) {
    if (!ports::kHasLite) return HARNESS_NO_CONTROL_PORT;
    cast(h)->lite.start_write(addr, data, strb);
    return cast(h)->finish_transfer(max_cycles);
}

// Register read into *data: the RRESP (0..3), or HARNESS_TIMEOUT after max_cycles.
int harness_reg_read(void* h, uint64_t addr, uint64_t* data, uint64_t max_cycles) {
    if (!ports::kHasLite) return HARNESS_NO_CONTROL_PORT;
    cast(h)->lite.start_read(addr);
    int resp = cast(h)->finish_transfer(max_cycles);
    *data = cast(h)->lite.rdata();
    return resp;
}

void harness_run(void* h, uint64_t cycles) {
    Harness* s = cast(h);
    for (uint64_t n = 0; n < cycles; ++n) s->step();
}

// Poll register `addr` (every poll_interval cycles, over AXI-Lite) until
// (value & mask) == expect. Returns the cycles it took, HARNESS_TIMEOUT once max_cycles
// have passed, or HARNESS_BUS_ERROR when a poll read answers SLVERR/DECERR. *last gets
// the last value read.
int64_t harness_run_until(void* h, uint64_t addr, uint64_t mask, uint64_t expect,
                          uint64_t max_cycles, uint32_t poll_interval, uint64_t* last) {
    if (!ports::kHasLite) return HARNESS_NO_CONTROL_PORT;
    Harness* s = cast(h);
    const uint64_t start = s->cycle;
    for (;;) {
        uint64_t used = s->cycle - start;
        if (used >= max_cycles) return HARNESS_TIMEOUT;
        int resp = harness_reg_read(h, addr, last, max_cycles - used);
        if (resp < 0) return resp;
        if (resp != RESP_OKAY) return HARNESS_BUS_ERROR;
        if ((*last & mask) == expect) return static_cast<int64_t>(s->cycle - start);
        used = s->cycle - start;
        if (used >= max_cycles) return HARNESS_TIMEOUT;
        harness_run(h, std::min<uint64_t>(std::max<uint32_t>(poll_interval, 1),
                                          max_cycles - used));
    }
}

uint64_t harness_cycles(void* h) { return cast(h)->cycle; }

void harness_counters(void* h, DramCounters* out) { *out = cast(h)->dram.counters(); }
void harness_reset_counters(void* h) { cast(h)->dram.reset_counters(); }
const char* harness_protocol_error(void* h) { return cast(h)->dram.protocol_error().c_str(); }
int harness_dram_idle(void* h) { return cast(h)->dram.idle(); }

void harness_set_bandwidth(void* h, double bytes_per_cycle) {
    cast(h)->dram.set_bandwidth(bytes_per_cycle);
}
void harness_set_latency(void* h, uint32_t read_latency, uint32_t write_latency) {
    cast(h)->dram.set_latency(read_latency, write_latency);
}
void harness_set_hang(void* h, int hang) { cast(h)->dram.set_hang(hang != 0); }
void harness_add_error_range(void* h, uint64_t start, uint64_t end, uint32_t kind) {
    cast(h)->dram.add_range(ErrorRange{start, end, static_cast<uint8_t>(kind)});
}
void harness_clear_error_ranges(void* h) { cast(h)->dram.clear_ranges(); }

// Start a VCD wave dump (only in builds made with trace=True); 0 on success.
int harness_trace_open(void* h, const char* path) {
#ifdef HARNESS_TRACE
    Harness* s = cast(h);
    s->trace.reset(new VerilatedVcdC);
    s->top->trace(s->trace.get(), 99);
    s->trace->open(path);
    return 0;
#else
    (void)h;
    (void)path;
    return -1;
#endif
}

}  // extern "C"
