#pragma once
// Per-worker counters. Each layer declares the stats it counts (sip::MessageStats,
// redirect::RedirectStats, registrar::RegistrarStats, location::StoreStats) out of these types;
// each worker owns one of each and is their only writer, so an increment is a relaxed load and
// store (no lock prefix, no shared cache line). The metrics layer reads them at scrape time from
// another thread and folds the workers together (DESIGN §9, STYLE.md Metrics).
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sipr::base {

class Counter {
  public:
    void inc(uint64_t n = 1) noexcept {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    [[nodiscard]] uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

  private:
    std::atomic<uint64_t> v_{0};
};

class Gauge {
  public:
    void add(int64_t n) noexcept {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void set(int64_t n) noexcept { v_.store(n, std::memory_order_relaxed); }
    [[nodiscard]] int64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

  private:
    std::atomic<int64_t> v_{0};
};

// Fixed-bucket histogram of durations in microseconds.
class DurationHistogram {
  public:
    static constexpr std::array<uint64_t, 12> kBoundsUs{
        100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000};
    void observe_us(uint64_t us) noexcept {
        std::size_t i = 0;
        while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
        buckets_[i].inc();  // buckets_[kBoundsUs.size()] is +Inf
        sum_us_.inc(us);
    }
    [[nodiscard]] uint64_t bucket(std::size_t i) const noexcept { return buckets_[i].get(); }
    [[nodiscard]] uint64_t sum_us() const noexcept { return sum_us_.get(); }

  private:
    std::array<Counter, kBoundsUs.size() + 1> buckets_{};
    Counter sum_us_;
};

// Why a worker dropped a datagram without answering (sip::MessageStats::dropped).
enum class DropReason : uint8_t {
    NotSip,            // start line unparsable, NUL bytes, garbage
    NoVia,             // a request without a usable Via: nowhere to answer
    TooLarge,          // over the size limit and unanswerable
    TooManyHeaders,    // over the header cap and unanswerable
    Response,          // a response sent to a server that sends no requests
    SendFailed,        // the socket refused the answer (buffer full)
    Denied,            // source not in --allow
    RateLimited,       // over the per-source rate
    ResponseTooLarge,  // even the bare answer would not fit the response limit
    kCount,
};
inline constexpr std::array<const char*, static_cast<std::size_t>(DropReason::kCount)>
    kDropReasonNames{"not_sip",     "no_via", "too_large",    "too_many_headers",  "response",
                     "send_failed", "denied", "rate_limited", "response_too_large"};

// The kinds of store error the services count (sipr_redis_errors_total).
enum class RedisErrorKind : uint8_t { Unavailable, Timeout, Overloaded, Protocol, kCount };
inline constexpr std::array<const char*, static_cast<std::size_t>(RedisErrorKind::kCount)>
    kRedisErrorKindNames{"unavailable", "timeout", "overloaded", "protocol"};

}  // namespace sipr::base
