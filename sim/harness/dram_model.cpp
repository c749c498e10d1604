// DRAM model behind AXI4 slave ports; see dram_model.h for the timing model.
#include "dram_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace harness {

static constexpr int64_t kCreditOne = 65536;   // credit units per byte

DramModel::DramModel(const DramConfig& cfg, const MasterPortInfo* ports, int n_ports)
    : cfg_(cfg) {
    // calloc: the pages of a large, mostly untouched memory are never committed.
    mem_ = static_cast<uint8_t*>(std::calloc(cfg.size ? cfg.size : 1, 1));
    if (!mem_) throw std::bad_alloc();
    ports_.resize(n_ports);
    for (int p = 0; p < n_ports; ++p) {
        ports_[p].info = ports[p];
        ports_[p].reads.init(cfg.max_outstanding_reads);
        ports_[p].writes.init(cfg.max_outstanding_writes);
        max_beat_bytes_ = std::max(max_beat_bytes_, ports[p].data_bytes);
    }
    zeros_.assign(std::max<uint32_t>(max_beat_bytes_, 1), 0);
    set_bandwidth(cfg.bytes_per_cycle);
    set_latency(cfg.read_latency, cfg.write_latency);
    reset_ports();
}

DramModel::~DramModel() { std::free(mem_); }

void DramModel::set_bandwidth(double bytes_per_cycle) {
    cfg_.bytes_per_cycle = bytes_per_cycle > 0 ? bytes_per_cycle : 0;
    rate_ = static_cast<int64_t>(std::llround(cfg_.bytes_per_cycle * kCreditOne));
    // Room for one cycle's worth plus the widest beat: a beat wider than a cycle's bytes
    // can always save up, and an idle memory does not bank an unbounded burst.
    credit_cap_ = rate_ + static_cast<int64_t>(max_beat_bytes_) * kCreditOne;
    credit_ = std::min(credit_, credit_cap_);
}

void DramModel::set_latency(uint32_t read_latency, uint32_t write_latency) {
    cfg_.read_latency = std::max<uint32_t>(read_latency, 1);
    cfg_.write_latency = std::max<uint32_t>(write_latency, 1);
}

void DramModel::reset_ports() {
    for (auto& port : ports_) {
        port.reads.clear();
        port.writes.clear();
        port.w_index = 0;
        port.in = MasterIn{};
        port.in.arready = port.info.has_read && !hang_;
        port.in.awready = port.info.has_write && !hang_;
        port.rdata_src = zeros_.data();
        port.rdata_changed = true;
        port.w_reserved = 0;
    }
    credit_ = credit_cap_;
}

bool DramModel::idle() const {
    for (const auto& port : ports_)
        if (port.reads.count() || port.writes.count()) return false;
    return true;
}

bool DramModel::take_credit(uint32_t bytes) {
    if (rate_ == 0) return true;
    int64_t cost = static_cast<int64_t>(bytes) * kCreditOne;
    if (credit_ < cost) return false;
    credit_ -= cost;
    return true;
}

uint64_t DramModel::beat_address(const Burst& b, uint32_t beat) {
    if (beat == 0) return b.addr;
    uint64_t aligned = b.addr & ~static_cast<uint64_t>(b.size - 1);
    return aligned + static_cast<uint64_t>(beat) * b.size;
}

uint8_t DramModel::beat_resp(uint64_t addr, uint32_t bytes) const {
    if (addr < cfg_.base || addr + bytes > cfg_.base + cfg_.size) return RESP_DECERR;
    for (const auto& r : ranges_)
        if (r.kind != RANGE_HANG && addr < r.end && addr + bytes > r.start) return r.kind;
    return RESP_OKAY;
}

bool DramModel::touches_hang(uint64_t addr, uint64_t bytes) const {
    for (const auto& r : ranges_)
        if (r.kind == RANGE_HANG && addr < r.end && addr + bytes > r.start) return true;
    return false;
}

void DramModel::protocol(const std::string& message) {
    ++counters_.protocol_errors;
    if (protocol_error_.empty()) protocol_error_ = message;
}

bool DramModel::check_burst(const char* what, int p, uint64_t addr, uint8_t len,
                            uint8_t size, uint8_t burst, uint32_t data_bytes) {
    char text[160];
    uint32_t bytes = 1u << size;
    if (burst != BURST_INCR) {
        std::snprintf(text, sizeof text, "port %d: %s burst type %u at 0x%llx (only INCR)",
                      p, what, burst, static_cast<unsigned long long>(addr));
    } else if (bytes > data_bytes) {
        std::snprintf(text, sizeof text, "port %d: %s size %u bytes wider than the %u-byte bus",
                      p, what, bytes, data_bytes);
    } else if (((addr & ~static_cast<uint64_t>(bytes - 1)) & 0xfff) + (len + 1ull) * bytes
               > 4096) {
        std::snprintf(text, sizeof text, "port %d: %s burst at 0x%llx of %u beats crosses 4 KiB",
                      p, what, static_cast<unsigned long long>(addr), len + 1u);
    } else {
        return true;
    }
    protocol(text);
    return false;
}

void DramModel::handshakes(uint64_t cycle, Port& port, const MasterOut& out,
                           const WriteBeat& wbeat) {
    int p = static_cast<int>(&port - ports_.data());
    MasterIn& in = port.in;
    if (port.info.has_read) {
        if (in.arready && out.arvalid) {
            check_burst("read", p, out.araddr, out.arlen, out.arsize, out.arburst,
                        port.info.data_bytes);
            Burst b{out.araddr, cycle + cfg_.read_latency, out.arid,
                    static_cast<uint16_t>(out.arlen + 1), 0,
                    static_cast<uint8_t>(1u << out.arsize), RESP_OKAY, false, false};
            b.hang = touches_hang(b.addr, static_cast<uint64_t>(b.beats) * b.size);
            port.reads.push(b);
            ++counters_.read_bursts;
        }
        if (in.rvalid) {
            if (out.rready) {
                Burst& b = port.reads.front();
                counters_.bytes_read += b.size;
                ++counters_.read_beats;
                if (++b.done == b.beats) port.reads.pop();
                in.rvalid = 0;
            } else {
                ++counters_.backpressure_cycles;
            }
        }
    }
    if (port.info.has_write) {
        if (in.awready && out.awvalid) {
            check_burst("write", p, out.awaddr, out.awlen, out.awsize, out.awburst,
                        port.info.data_bytes);
            Burst b{out.awaddr, 0, out.awid, static_cast<uint16_t>(out.awlen + 1), 0,
                    static_cast<uint8_t>(1u << out.awsize), RESP_OKAY, false, false};
            b.hang = touches_hang(b.addr, static_cast<uint64_t>(b.beats) * b.size);
            port.writes.push(b);
            ++counters_.write_bursts;
        }
        if (in.wready && out.wvalid) {
            Burst& b = port.writes.at(port.w_index);
            uint32_t bus = port.info.data_bytes;
            uint64_t addr = beat_address(b, b.done);
            uint64_t word = addr & ~static_cast<uint64_t>(bus - 1);
            uint8_t resp = beat_resp(word, bus);
            if (resp == RESP_OKAY) {
                uint8_t* dst = mem_ + (word - cfg_.base);
                for (uint32_t lane = 0; lane < bus; ++lane)
                    if (wbeat.strb[lane >> 3] >> (lane & 7) & 1) dst[lane] = wbeat.data[lane];
            }
            b.resp = std::max(b.resp, resp);
            bool last = ++b.done == b.beats;
            if (static_cast<bool>(out.wlast) != last) {
                char text[120];
                std::snprintf(text, sizeof text, "port %d: WLAST %u on beat %u of a %u-beat burst",
                              p, out.wlast, b.done, b.beats);
                protocol(text);
            }
            counters_.bytes_written += b.size;
            ++counters_.write_beats;
            if (last) {
                b.data_done = true;
                b.ready_at = cycle + cfg_.write_latency;
                ++port.w_index;
            }
        } else if (in.wready) {
            credit_ = std::min(credit_ + port.w_reserved, credit_cap_);   // unused: refund
        }
        port.w_reserved = 0;
        in.wready = 0;
        if (in.bvalid) {
            if (out.bready) {
                port.writes.pop();
                --port.w_index;
                in.bvalid = 0;
            } else {
                ++counters_.backpressure_cycles;
            }
        }
    }
}

void DramModel::offer_read(uint64_t cycle, Port& port) {
    MasterIn& in = port.in;
    in.arready = !hang_ && !port.reads.full();
    if (in.rvalid || !port.reads.count() || hang_) return;   // a held beat stays as it is
    Burst& b = port.reads.front();
    if (b.hang || cycle + 1 < b.ready_at) return;
    if (!take_credit(b.size)) { port.r_stalled = true; return; }
    uint32_t bus = port.info.data_bytes;
    uint64_t word = beat_address(b, b.done) & ~static_cast<uint64_t>(bus - 1);
    uint8_t resp = beat_resp(word, bus);
    in.rvalid = 1;
    in.rid = b.id;
    in.rresp = resp;
    in.rlast = b.done + 1 == b.beats;
    port.rdata_src = resp == RESP_OKAY ? mem_ + (word - cfg_.base) : zeros_.data();
    port.rdata_changed = true;
    if (resp != RESP_OKAY) ++counters_.error_responses;
}

void DramModel::offer_write(Port& port, const MasterOut& out) {
    MasterIn& in = port.in;
    in.awready = !hang_ && !port.writes.full();
    if (hang_ || port.w_index >= port.writes.count()) return;
    // wready only while the master shows data (it keeps WVALID up until taken), so the
    // bandwidth reserved for it is rarely left unused.
    if (!out.wvalid) return;
    Burst& b = port.writes.at(port.w_index);
    if (!take_credit(b.size)) { port.w_stalled = true; return; }
    in.wready = 1;
    port.w_reserved = rate_ ? static_cast<int64_t>(b.size) * kCreditOne : 0;
}

void DramModel::offer_response(uint64_t cycle, Port& port) {
    MasterIn& in = port.in;
    if (in.bvalid || !port.writes.count() || hang_) return;
    Burst& b = port.writes.front();
    if (!b.data_done || b.hang || cycle + 1 < b.ready_at) return;
    in.bvalid = 1;
    in.bid = b.id;
    in.bresp = b.resp;
    if (b.resp != RESP_OKAY) ++counters_.error_responses;
}

void DramModel::update(uint64_t cycle, const MasterOut* outs, const WriteBeat* wbeats) {
    const int n = static_cast<int>(ports_.size());
    bool busy = false;
    for (int p = 0; p < n; ++p) {
        Port& port = ports_[p];
        port.rdata_changed = false;
        port.r_stalled = port.w_stalled = false;
        handshakes(cycle, port, outs[p], wbeats[p]);
        busy |= port.reads.count() || port.writes.count();
    }
    if (busy) ++counters_.busy_cycles;
    if (rate_) credit_ = std::min(credit_ + rate_, credit_cap_);
    // Round robin over the ports; reads and writes take turns being first.
    rotate_ = rotate_ + 1 == static_cast<uint32_t>(n) ? 0 : rotate_ + 1;
    bool reads_first = cycle & 1;
    bool stalled = false;
    for (int k = 0; k < n; ++k) {
        Port& port = ports_[(rotate_ + k) % n];
        const MasterOut& out = outs[(rotate_ + k) % n];
        if (reads_first && port.info.has_read) offer_read(cycle, port);
        if (port.info.has_write) offer_write(port, out);
        if (!reads_first && port.info.has_read) offer_read(cycle, port);
        if (port.info.has_write) offer_response(cycle, port);
        stalled |= port.r_stalled || port.w_stalled;
    }
    if (stalled) ++counters_.bandwidth_stall_cycles;
}

}  // namespace harness
