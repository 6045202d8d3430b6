// net::SourceRateLimiter (--rate-limit, --rate-burst): the burst a new source gets, the refill at
// millisecond resolution, sources kept apart by IP (not port), and a full table: bounded memory,
// new sources still served, a heavy sender not pushed out by a crowd of one-off sources.
#include "sipr/net/rate_limiter.h"

#include <doctest/doctest.h>

#include <cstdint>

using sipr::net::IpKey;
using sipr::net::SourceRateLimiter;

namespace {

IpKey v4(uint32_t a) {
    return IpKey{0, 0x0000ffff00000000ull | a};
}

// How many of `n` datagrams from `k` at `now` pass.
int passed(SourceRateLimiter& l, const IpKey& k, uint64_t now, int n) {
    int ok = 0;
    for (int i = 0; i < n; ++i) ok += l.allow(k, now) ? 1 : 0;
    return ok;
}

constexpr uint64_t kT0 = 1'000'000;  // any monotonic ms

}  // namespace

TEST_SUITE_BEGIN("net");

TEST_CASE("SourceRateLimiter: a new source gets exactly its burst at once, then nothing") {
    SourceRateLimiter l(100, 20, 1024, 1);
    CHECK(passed(l, v4(1), kT0, 20) == 20);
    CHECK_FALSE(l.allow(v4(1), kT0));
    CHECK(passed(l, v4(1), kT0, 1000) == 0);
    // Burst 1: one datagram, then the rate.
    SourceRateLimiter one(10, 1, 1024, 1);
    CHECK(one.allow(v4(1), kT0));
    CHECK_FALSE(one.allow(v4(1), kT0));
    CHECK_FALSE(one.allow(v4(1), kT0 + 99));
    CHECK(one.allow(v4(1), kT0 + 100));
}

TEST_CASE("SourceRateLimiter: the refill is the rate, to the millisecond, never above the burst") {
    SourceRateLimiter l(10, 5, 1024, 1);  // one token per 100 ms
    CHECK(passed(l, v4(1), kT0, 5) == 5);
    CHECK_FALSE(l.allow(v4(1), kT0 + 99));
    CHECK(l.allow(v4(1), kT0 + 100));
    CHECK_FALSE(l.allow(v4(1), kT0 + 100));
    // Refills are not lost to denied datagrams in between: 50 ms + 50 ms make a token.
    CHECK_FALSE(l.allow(v4(1), kT0 + 150));
    CHECK(l.allow(v4(1), kT0 + 200));
    // A long pause fills the bucket to the burst, not beyond.
    CHECK(passed(l, v4(1), kT0 + 3'600'000, 100) == 5);
    // A steady sender at exactly the rate is never refused; at twice the rate, half is.
    SourceRateLimiter s(1000, 1, 1024, 1);  // one per ms
    int ok = 0;
    for (uint64_t t = 0; t < 1000; ++t) ok += s.allow(v4(2), kT0 + t) ? 1 : 0;
    CHECK(ok == 1000);
    ok = 0;
    for (uint64_t t = 0; t < 1000; ++t) ok += passed(s, v4(2), kT0 + 1000 + t, 2);
    CHECK(ok == 1000);
    // A high rate: 1,000,000 per second is 1,000 per ms.
    SourceRateLimiter fast(1'000'000, 1000, 1024, 1);
    CHECK(passed(fast, v4(3), kT0, 5000) == 1000);
    CHECK(passed(fast, v4(3), kT0 + 1, 5000) == 1000);
    CHECK(passed(fast, v4(3), kT0 + 3, 5000) == 1000);  // burst caps the 3 ms refill
}

TEST_CASE("SourceRateLimiter: sources are apart; IPv4 and its v4-mapped form are one source") {
    SourceRateLimiter l(1, 3, 1024, 7);
    CHECK(passed(l, v4(0x0a000001), kT0, 10) == 3);
    CHECK(passed(l, v4(0x0a000002), kT0, 10) == 3);
    const IpKey v6{0x20010db800000000ull, 1};
    const IpKey v6b{0x20010db800000000ull, 2};  // the same /64: the same source by default
    const IpKey v6c{0x20010db800000001ull, 1};  // another /64, same low half
    CHECK(passed(l, v6, kT0, 10) == 3);
    CHECK(passed(l, v6b, kT0, 10) == 0);
    CHECK(passed(l, v6c, kT0, 10) == 3);
    // The key of 10.0.0.1 and of ::ffff:10.0.0.1 is the same value: one bucket (see ip_key).
    CHECK_FALSE(l.allow(IpKey{0, 0x0000ffff0a000001ull}, kT0));
}

TEST_CASE("SourceRateLimiter: an IPv6 source is its /64 by default; IPv4 stays per address") {
    // 100 datagrams from 100 addresses of one /64 (one host picks any of them for free): one
    // bucket, so the burst of 10 is all that passes, as for 100 from a single address.
    SourceRateLimiter l(10, 10, 1024, 3);
    int ok = 0;
    for (uint64_t i = 1; i <= 100; ++i)
        ok += l.allow(IpKey{0x20010db8000a000bull, i * 0x0101010101ull}, kT0) ? 1 : 0;
    CHECK(ok == 10);
    CHECK(passed(l, IpKey{0x20010db8000a000bull, ~0ull}, kT0, 5) == 0);
    // The neighbouring /64 is another source.
    CHECK(passed(l, IpKey{0x20010db8000a000cull, 1}, kT0, 20) == 10);
    // IPv4 (and v4-mapped: the same key) is never cut: 100 addresses of one /24, each its burst.
    // (A /64 cut would put all of IPv4 into ::/64, one bucket.)
    int v4ok = 0;
    for (uint32_t i = 1; i <= 100; ++i) v4ok += passed(l, v4(0xc0000200u | i), kT0, 11);
    CHECK(v4ok == 100 * 10);
    // Other IPv6 addresses whose upper half is 0 (::1, ::2, ...) are one /64 too, and not IPv4.
    CHECK(passed(l, IpKey{0, 1}, kT0, 20) == 10);
    CHECK(passed(l, IpKey{0, 2}, kT0, 20) == 0);
}

TEST_CASE("SourceRateLimiter: the IPv6 prefix is configurable, 1..128") {
    // /128: every address its own source, as before.
    SourceRateLimiter exact(10, 10, 1024, 3, 128);
    int ok = 0;
    for (uint64_t i = 1; i <= 100; ++i)
        ok += exact.allow(IpKey{0x20010db8000a000bull, i}, kT0) ? 1 : 0;
    CHECK(ok == 100);
    // /48: two /64s of one /48 share a bucket; another /48 does not.
    SourceRateLimiter wide(1, 4, 1024, 3, 48);
    CHECK(passed(wide, IpKey{0x20010db8000a0001ull, 1}, kT0, 3) == 3);
    CHECK(passed(wide, IpKey{0x20010db8000affffull, 9}, kT0, 3) == 1);
    CHECK(passed(wide, IpKey{0x20010db8000b0001ull, 1}, kT0, 3) == 3);
    // /72 crosses into the lower half: addresses differing only below bit 72 share.
    SourceRateLimiter deep(1, 2, 1024, 3, 72);
    CHECK(passed(deep, IpKey{0x20010db800000000ull, 0x12ffffffffffffffull}, kT0, 2) == 2);
    CHECK(passed(deep, IpKey{0x20010db800000000ull, 0x1200000000000000ull}, kT0, 2) == 0);
    CHECK(passed(deep, IpKey{0x20010db800000000ull, 0x1300000000000000ull}, kT0, 2) == 2);
    // Out of range is clamped (0 -> 1, 200 -> 128) rather than undefined.
    SourceRateLimiter one(1, 1, 1024, 3, 0);
    CHECK(one.allow(IpKey{0x2000000000000000ull, 1}, kT0));
    CHECK_FALSE(one.allow(IpKey{0x3fff000000000000ull, 7}, kT0));  // the same /1
    CHECK(one.allow(IpKey{0x8000000000000000ull, 1}, kT0));
    SourceRateLimiter all(1, 1, 1024, 3, 200);
    CHECK(all.allow(IpKey{0x20010db800000000ull, 1}, kT0));
    CHECK(all.allow(IpKey{0x20010db800000000ull, 2}, kT0));
}

TEST_CASE("SourceRateLimiter: a clock that goes back refills nothing and breaks nothing") {
    SourceRateLimiter l(10, 2, 1024, 1);
    CHECK(passed(l, v4(1), kT0, 2) == 2);
    CHECK_FALSE(l.allow(v4(1), kT0 - 500));
    CHECK_FALSE(l.allow(v4(1), kT0 + 50));  // measured from the later stamp: nothing yet
    CHECK(l.allow(v4(1), kT0 + 100));
}

TEST_CASE("SourceRateLimiter: the table size is fixed, a power of two, at least the probe window") {
    CHECK(SourceRateLimiter(1, 1, 0, 1).entries() == SourceRateLimiter::kProbes);
    CHECK(SourceRateLimiter(1, 1, 100, 1).entries() == 128);
    CHECK(SourceRateLimiter(1, 1, SourceRateLimiter::kDefaultEntries, 1).entries() == 65536);
}

TEST_CASE("SourceRateLimiter: a full table serves new sources and keeps the heavy sender limited") {
    // 8 entries: every source shares one probe window.
    SourceRateLimiter l(1, 10, 8, 3);
    const IpKey flooder = v4(0xc0000201);
    CHECK(passed(l, flooder, kT0, 1000) == 10);
    uint64_t now = kT0;
    int newcomers_served = 0;
    int flooder_passed = 0;
    for (uint32_t i = 0; i < 10'000; ++i) {
        now += (i % 10 == 0) ? 1 : 0;
        // One-off sources (as spoofed ones would be), each seen once...
        newcomers_served += l.allow(v4(0x0a000000 + i), now) ? 1 : 0;
        // ...while the flooder keeps sending: its bucket is the emptiest, never the one forgotten,
        // so it never gets a fresh burst. Its refill over these 1000 ms is 1 token.
        if (i % 10 == 0) flooder_passed += l.allow(flooder, now) ? 1 : 0;
    }
    CHECK(newcomers_served == 10'000);
    CHECK(flooder_passed <= 1);
    CHECK(l.evictions() > 9'000);
    CHECK(l.entries() == 8);
    CHECK_FALSE(l.allow(flooder, now));
}

TEST_CASE("SourceRateLimiter: a refilled bucket is forgotten first, without counting an eviction") {
    SourceRateLimiter l(1000, 2, 8, 5);  // full again 2 ms after empty
    uint64_t now = kT0;
    for (uint32_t i = 0; i < 100; ++i) {
        CHECK(passed(l, v4(i), now, 3) == 2);
        now += 2;  // every older bucket has refilled: its slot is free for the next source
    }
    CHECK(l.evictions() == 0);
    // In a full window the fullest bucket goes: here the quiet source's, which then simply starts
    // again with a full bucket (2 rather than the 1 it had left).
    SourceRateLimiter small(1, 2, 8, 5);
    CHECK(passed(small, v4(1), kT0, 1) == 1);
    for (uint32_t i = 2; i < 20; ++i) CHECK(passed(small, v4(i), kT0 + i, 2) == 2);
    CHECK(small.evictions() > 0);
    CHECK(passed(small, v4(1), kT0 + 100, 5) == 2);
    // Without the crowd it would have had 1 left plus 0.1 refilled.
    SourceRateLimiter alone(1, 2, 8, 5);
    CHECK(passed(alone, v4(1), kT0, 1) == 1);
    CHECK(passed(alone, v4(1), kT0 + 100, 5) == 1);
}

TEST_SUITE_END();
