#pragma once
// Per-worker counters. Each worker owns one ServiceStats and is its only writer, so an increment is
// a relaxed load and store (no lock prefix, no shared cache line); the metrics layer reads them at
// scrape time from another thread and folds the workers together (DESIGN §9, STYLE.md Metrics).
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

enum class RegistrationResult : uint8_t {
    Ok,          // 200
    Removed,     // 200 after removing bindings only
    Fetch,       // 200 to a REGISTER without Contact
    Refused,     // 4xx
    Stale,       // 500 (CSeq order)
    StoreError,  // 503
    kCount,
};
inline constexpr std::array<const char*, static_cast<std::size_t>(RegistrationResult::kCount)>
    kRegistrationResultNames{"ok", "removed", "fetch", "refused", "stale", "store_error"};

enum class RedisErrorKind : uint8_t { Unavailable, Timeout, Overloaded, Protocol, kCount };
inline constexpr std::array<const char*, static_cast<std::size_t>(RedisErrorKind::kCount)>
    kRedisErrorKindNames{"unavailable", "timeout", "overloaded", "protocol"};

// Digest algorithms, as sipr_auth_successes_total labels them (index = registrar::DigestAlgorithm).
inline constexpr std::array<const char*, 2> kAuthAlgorithmNames{"MD5", "SHA-256"};

// What one worker of a daemon counts. Method indices are sip::Method values.
struct ServiceStats {
    static constexpr std::size_t kMethods = 16;
    static constexpr std::size_t kCodes = 700;
    std::array<Counter, kMethods> requests{};
    std::array<Counter, kCodes> responses{};
    std::array<Counter, static_cast<std::size_t>(DropReason::kCount)> dropped{};
    std::array<Counter, static_cast<std::size_t>(RegistrationResult::kCount)> registrations{};
    std::array<Counter, static_cast<std::size_t>(RedisErrorKind::kCount)> redis_errors{};
    Counter datagrams;  // every datagram this worker's socket received, before any check
    Counter auth_failures;
    std::array<Counter, kAuthAlgorithmNames.size()> auth_successes{};  // by algorithm
    Counter contacts_cut;  // contacts left out of a 302 to fit the datagram
    Counter garbage_bindings;
    Counter cache_hits, cache_misses, cache_invalidations;
    Counter cache_flushes;  // the whole near-cache dropped (tracking lost or regained, FLUSHALL)
    Gauge cache_entries;    // AORs in this worker's near-cache
    Gauge inflight_lookups;
    Counter redis_moved, redis_ask;  // Redis Cluster redirections followed (-MOVED, -ASK)
    Gauge redis_up;  // 1 while this worker's store can serve (its Redis connection is ready)
    Gauge draining;  // 1 once this worker is draining (SIGTERM: the health probe says 503)
    DurationHistogram lookup_duration;

    void drop(DropReason r) noexcept { dropped[static_cast<std::size_t>(r)].inc(); }
    void response(uint16_t code) noexcept {
        if (code < kCodes) responses[code].inc();
    }
    void registration(RegistrationResult r) noexcept {
        registrations[static_cast<std::size_t>(r)].inc();
    }
    void redis_error(RedisErrorKind k) noexcept { redis_errors[static_cast<std::size_t>(k)].inc(); }
};

}  // namespace sipr::base
