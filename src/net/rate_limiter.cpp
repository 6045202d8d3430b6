#include "sipr/net/rate_limiter.h"

#include <algorithm>

namespace sipr::net {

namespace {

constexpr uint64_t kCost = 1000;  // one datagram, in thousandths of a token

// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
constexpr uint64_t fmix64(uint64_t x) noexcept {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

}  // namespace

SourceRateLimiter::SourceRateLimiter(uint32_t rate_per_s, uint32_t burst, std::size_t entries,
                                     uint64_t seed, unsigned v6_prefix)
    : seed_(fmix64(seed ^ 0x9e3779b97f4a7c15ull)),
      v6_mask_(prefix_mask(std::clamp(v6_prefix, 1u, 128u))) {
    rate_ = std::clamp<uint64_t>(rate_per_s, 1, kMaxRate);
    cap_ = std::clamp<uint64_t>(burst, 1, kMaxBurst) * kCost;
    full_after_ms_ = (cap_ + rate_ - 1) / rate_;
    std::size_t n = kProbes;
    while (n < entries && n < (std::size_t{1} << 30)) n <<= 1;
    table_ = std::make_unique<Entry[]>(n);
    mask_ = n - 1;
}

SourceRateLimiter::~SourceRateLimiter() = default;

std::size_t SourceRateLimiter::slot_of(const IpKey& k) const noexcept {
    // For a fixed upper half the mix before fmix64 is a bijection of the lower half, so distinct
    // sources of one /64 (or all of IPv4) never collide before the final mask.
    uint64_t x = (k.hi ^ seed_) * 0x9e3779b97f4a7c15ull + (k.lo ^ (seed_ >> 17));
    return static_cast<std::size_t>(fmix64(x)) & mask_;
}

uint64_t SourceRateLimiter::refilled(const Entry& e, uint64_t now_ms) const noexcept {
    const uint64_t last = e.stamp - 1;
    const uint64_t elapsed = now_ms > last ? now_ms - last : 0;
    if (elapsed >= full_after_ms_) return cap_;
    return std::min(cap_, e.milli + elapsed * rate_);  // elapsed * rate_ <= cap_ + rate_
}

bool SourceRateLimiter::allow(const IpKey& address, uint64_t now_ms) noexcept {
    const IpKey source = source_key(address, v6_mask_);
    const std::size_t home = slot_of(source);
    // The slot a new source takes: the first free one, else the one whose bucket is fullest.
    // Forgetting a bucket refills it, so the fullest one is the cheapest to forget (a full one
    // costs nothing), and a heavy sender's, near empty, is the last to go.
    Entry* victim = nullptr;
    uint64_t victim_milli = 0;
    for (std::size_t i = 0; i < kProbes; ++i) {
        Entry& e = table_[(home + i) & mask_];
        if (e.stamp == 0) {
            // Slots are never emptied again, so the source is not further on.
            if (victim == nullptr || victim_milli < cap_) {
                victim = &e;
                victim_milli = cap_;
            }
            break;
        }
        if (e.key == source) {
            e.milli = refilled(e, now_ms);
            if (now_ms + 1 > e.stamp) e.stamp = now_ms + 1;  // never back: no time counted twice
            if (e.milli < kCost) return false;
            e.milli -= kCost;
            return true;
        }
        const uint64_t milli = refilled(e, now_ms);
        if (victim == nullptr || milli > victim_milli) {
            victim = &e;
            victim_milli = milli;
        }
    }
    if (victim_milli < cap_) ++evictions_;
    // A source seen for the first time (or again after it was forgotten): a full bucket.
    victim->key = source;
    victim->milli = cap_ - kCost;
    victim->stamp = now_ms + 1;
    return true;
}

}  // namespace sipr::net
