#pragma once
// A token bucket per source address for one worker (--rate-limit, --rate-burst; DESIGN §8).
//
// Per worker, not shared: that keeps the receive path free of locks and shared atomics
// (STYLE.md). With --spread random (the default) every worker sees about 1/N of each source's
// datagrams, so the app gives each worker 1/N of the rate and burst (rounded up) and a source
// meets about the flags' limit in all. With --spread flow the kernel hashes the flow (source and
// destination address and port) to one worker, which holds the whole limit; a source sending from
// several ports may then reach several workers and get up to N times the rate. Both err on the
// side of answering.
//
// The table is fixed at construction (a power of two of 32-byte entries, 64k by default: 2 MiB
// per worker), open-addressed with a short probe window, keyed by the source IP (never the port:
// a flooder changes ports for free), an IPv6 source by its prefix (net::source_key: one host owns
// a /64 and picks any address in it for free; IPv4 and v4-mapped sources by the whole /32). Nothing
// is allocated per datagram and memory is bounded whatever the number of sources. A new source
// takes, within its window, the first free slot, else the slot whose bucket is fullest: forgetting
// a bucket refills it, so a full one is forgotten at no cost and a nearly full one (a quiet source)
// at little. A limited heavy sender's bucket is near empty, the last to go, so a crowd of (spoofed)
// one-off sources cannot push it out to get it a fresh bucket. The hash is seeded per table so
// sources cannot be chosen to pile into one window; even then the work per datagram stays bounded
// (kProbes entries).
//
// Time is a monotonic millisecond clock passed in by the caller (the loop's uv_now(): no system
// call per datagram). Tokens are kept in thousandths, so the refill is exact for any rate at
// millisecond resolution: each millisecond adds `rate` thousandths, a datagram costs 1000.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "sipr/net/address_set.h"

namespace sipr::net {

class SourceRateLimiter {
  public:
    static constexpr std::size_t kDefaultEntries = 64 * 1024;
    static constexpr std::size_t kProbes = 8;
    static constexpr uint32_t kMaxRate = 10'000'000;    // per second
    static constexpr uint32_t kMaxBurst = 100'000'000;  // datagrams
    static constexpr unsigned kDefaultV6Prefix = 64;    // --rate-limit-v6-prefix

    // `rate_per_s` datagrams per second per source (1..kMaxRate), at most `burst` at once
    // (1..kMaxBurst; a new source starts with a full bucket); `entries` is rounded up to a power of
    // two, at least kProbes; an IPv6 source is its first `v6_prefix` bits (1..128). Values outside
    // the ranges are clamped into them. Allocates the table.
    SourceRateLimiter(uint32_t rate_per_s, uint32_t burst, std::size_t entries, uint64_t seed,
                      unsigned v6_prefix = kDefaultV6Prefix);
    ~SourceRateLimiter();
    SourceRateLimiter(const SourceRateLimiter&) = delete;
    SourceRateLimiter& operator=(const SourceRateLimiter&) = delete;

    // Takes one token from the bucket of `address` (an ip_key; cut to the IPv6 prefix here) at
    // `now_ms` (monotonic; a clock that goes back is treated as standing still). Returns false when
    // the bucket is empty: the datagram is over the rate. No allocation, no system call, at most
    // kProbes entries looked at.
    [[nodiscard]] bool allow(const IpKey& address, uint64_t now_ms) noexcept;

    [[nodiscard]] std::size_t entries() const noexcept { return mask_ + 1; }
    // Sources forgotten while their bucket was not yet full, to make room in a full window.
    [[nodiscard]] uint64_t evictions() const noexcept { return evictions_; }

  private:
    struct alignas(32) Entry {
        IpKey key;
        uint64_t milli = 0;  // tokens, thousandths
        uint64_t stamp = 0;  // last refill, now_ms + 1; 0: never used
    };
    [[nodiscard]] std::size_t slot_of(const IpKey& k) const noexcept;
    // Tokens (thousandths) `e` holds at `now_ms` after its refill.
    [[nodiscard]] uint64_t refilled(const Entry& e, uint64_t now_ms) const noexcept;

    std::unique_ptr<Entry[]> table_;
    std::size_t mask_ = 0;
    uint64_t rate_ = 0;           // thousandths of a token per ms == tokens per second
    uint64_t cap_ = 0;            // burst, in thousandths
    uint64_t full_after_ms_ = 0;  // an empty bucket is full again after this long
    uint64_t seed_ = 0;
    uint64_t evictions_ = 0;
    IpKey v6_mask_;  // prefix_mask(v6_prefix)
};

}  // namespace sipr::net
