// A DRAM behind AXI4 slave ports: a byte array serving INCR bursts on N master ports.
//
// Timing model (all per port unless noted):
// * AR / AW are accepted while fewer than max_outstanding bursts of that kind are open.
// * The first R beat of a burst is offered read_latency cycles after its AR handshake at
//   the earliest (1 = the next cycle); bursts are answered in order, so outstanding bursts
//   overlap their latencies. A write's B is offered write_latency cycles after its last
//   W beat.
// * A bandwidth cap (bytes per cycle, shared by all ports and both directions) is a token
//   bucket: every R beat offered and every W beat accepted costs its bytes. 0 = no cap.
// * Error ranges answer SLVERR or DECERR for the beats whose address falls inside (reads
//   return zeros, writes are dropped); a HANG range makes bursts that touch it never
//   complete, and set_hang() stops the whole memory answering (to test timeouts).
//   Addresses outside [base, base + size) answer DECERR.
//
// The model is a Moore machine: update() sees the handshakes of the cycle that ends at the
// next rising edge and computes every output for the following cycle, so no output depends
// combinationally on the DUT.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "axi_signals.h"

namespace harness {

enum RangeKind : uint8_t { RANGE_SLVERR = 2, RANGE_DECERR = 3, RANGE_HANG = 4 };

struct DramConfig {
    uint64_t base = 0;
    uint64_t size = 1 << 20;
    double bytes_per_cycle = 0;          // 0: no bandwidth cap
    uint32_t read_latency = 1, write_latency = 1;
    uint32_t max_outstanding_reads = 8, max_outstanding_writes = 8;
};

// Counters since the last reset_counters(). Field order is mirrored by sim/harness.py.
struct DramCounters {
    uint64_t bytes_read, bytes_written;
    uint64_t read_bursts, write_bursts, read_beats, write_beats;
    uint64_t busy_cycles;             // a burst was open on some port
    uint64_t bandwidth_stall_cycles;  // a due beat waited for the bandwidth cap
    uint64_t backpressure_cycles;     // an R or B beat was offered and not taken
    uint64_t error_responses;         // R beats and B responses other than OKAY
    uint64_t protocol_errors;         // AXI rule broken by the master (see protocol_error())
};

struct Burst {
    uint64_t addr;       // address of the first beat
    uint64_t ready_at;   // first cycle its response may be offered
    uint32_t id;
    uint16_t beats;      // AxLEN + 1
    uint16_t done;       // beats transferred so far
    uint8_t size;        // bytes per beat
    uint8_t resp;        // writes: the worst response of its beats
    bool hang;           // touches a HANG range: never answered
    bool data_done;      // writes: every W beat received
};

// Fixed-capacity FIFO of bursts (capacity = max outstanding).
class BurstQueue {
  public:
    void init(uint32_t capacity) { slots_.assign(capacity ? capacity : 1, Burst{}); }
    uint32_t count() const { return count_; }
    bool full() const { return count_ == slots_.size(); }
    Burst& at(uint32_t i) { return slots_[(head_ + i) % slots_.size()]; }
    Burst& front() { return slots_[head_]; }
    void push(const Burst& b) { slots_[(head_ + count_) % slots_.size()] = b; ++count_; }
    void pop() { head_ = (head_ + 1) % slots_.size(); --count_; }
    void clear() { head_ = count_ = 0; }
  private:
    std::vector<Burst> slots_;
    uint32_t head_ = 0, count_ = 0;
};

struct ErrorRange { uint64_t start, end; uint8_t kind; };

// Data of a W beat captured from the DUT before the edge: bytes and packed strobe bits.
struct WriteBeat { uint8_t data[128]; uint8_t strb[16]; };

class DramModel {
  public:
    DramModel(const DramConfig& cfg, const MasterPortInfo* ports, int n_ports);
    ~DramModel();
    DramModel(const DramModel&) = delete;
    DramModel& operator=(const DramModel&) = delete;

    // One clock cycle: handshakes between `outs` (the DUT, this cycle) and in(p) (what
    // we drive this cycle), then in(p) for the next cycle. `wbeats[p]` holds the W data of
    // port p when it handshakes this cycle. After update(), rdata_changed(p) says whether
    // rdata_source(p) must be copied onto the port's rdata.
    void update(uint64_t cycle, const MasterOut* outs, const WriteBeat* wbeats);
    // Forget every open burst and drive idle outputs (for a reset of the DUT).
    void reset_ports();

    const MasterIn& in(int p) const { return ports_[p].in; }
    bool rdata_changed(int p) const { return ports_[p].rdata_changed; }
    const uint8_t* rdata_source(int p) const { return ports_[p].rdata_src; }
    bool idle() const;

    uint8_t* memory() { return mem_; }
    const DramConfig& config() const { return cfg_; }
    void set_bandwidth(double bytes_per_cycle);
    void set_latency(uint32_t read_latency, uint32_t write_latency);
    void set_hang(bool hang) { hang_ = hang; }
    void add_range(const ErrorRange& r) { ranges_.push_back(r); }
    void clear_ranges() { ranges_.clear(); }
    const DramCounters& counters() const { return counters_; }
    void reset_counters() { counters_ = DramCounters{}; }
    const std::string& protocol_error() const { return protocol_error_; }

  private:
    struct Port {
        MasterPortInfo info;
        BurstQueue reads, writes;
        uint32_t w_index = 0;        // writes.at(w_index) receives the next W beat
        MasterIn in;
        const uint8_t* rdata_src = nullptr;
        bool rdata_changed = false;
        int64_t w_reserved = 0;      // credit held for the wready driven now
        bool r_stalled = false, w_stalled = false;
    };

    void handshakes(uint64_t cycle, Port& port, const MasterOut& out, const WriteBeat& wbeat);
    void offer_read(uint64_t cycle, Port& port);
    void offer_write(Port& port, const MasterOut& out);
    void offer_response(uint64_t cycle, Port& port);
    bool take_credit(uint32_t bytes);
    uint8_t beat_resp(uint64_t addr, uint32_t bytes) const;
    bool touches_hang(uint64_t addr, uint64_t bytes) const;
    bool check_burst(const char* what, int p, uint64_t addr, uint8_t len, uint8_t size,
                     uint8_t burst, uint32_t data_bytes);
    void protocol(const std::string& message);
    static uint64_t beat_address(const Burst& b, uint32_t beat);

    DramConfig cfg_;
    std::vector<Port> ports_;
    std::vector<ErrorRange> ranges_;
    uint8_t* mem_ = nullptr;
    std::vector<uint8_t> zeros_;
    int64_t credit_ = 0, rate_ = 0, credit_cap_ = 0;   // in 1/65536 bytes
    uint32_t max_beat_bytes_ = 0;
    uint32_t rotate_ = 0;
    bool hang_ = false;
    DramCounters counters_{};
    std::string protocol_error_;
};

}  // namespace harness
