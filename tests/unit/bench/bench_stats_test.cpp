// sip-bench's statistics: the percentiles it reports, the Zipf popularity it draws, and how it
// splits the window, the rate and the sockets over its threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "../../../bench/bench_stats.h"

using sipr::bench::AorPicker;
using sipr::bench::Histogram;
using sipr::bench::share;
using sipr::bench::SocketRing;

TEST_CASE("Histogram: exact below 128 us, within 1/64 above, percentiles by rank") {
    Histogram h;
    for (int v = 1; v <= 100; ++v) h.record(v);
    CHECK(h.total() == 100);
    CHECK(h.percentile(50) == 50);
    CHECK(h.percentile(99) == 99);
    CHECK(h.percentile(100) == 100);
    CHECK(h.max() == 100);
    CHECK(h.mean() == doctest::Approx(50.5));

    // Every value maps to a bucket whose upper edge is >= it and within 1/64 of it.
    for (uint64_t v : {128ull, 129ull, 255ull, 256ull, 1000ull, 4095ull, 123456ull, 987654321ull}) {
        uint64_t up = Histogram::upper(Histogram::index(v));
        CHECK(up >= v);
        CHECK(static_cast<double>(up - v) <= static_cast<double>(v) / 64.0);
        if (Histogram::index(v) > 0) CHECK(Histogram::upper(Histogram::index(v) - 1) < v);
    }
}

TEST_CASE("Histogram: percentiles agree with sorting a random sample, merge adds up") {
    std::mt19937_64 rng(7);
    std::lognormal_distribution<double> dist(6.0, 1.0);  // around 400 us, long tail
    std::vector<uint64_t> all;
    Histogram a, b;
    for (int i = 0; i < 100000; ++i) {
        auto v = static_cast<uint64_t>(dist(rng));
        all.push_back(v);
        (i % 2 == 0 ? a : b).record(static_cast<int64_t>(v));
    }
    a.merge(b);
    CHECK(a.total() == all.size());
    std::sort(all.begin(), all.end());
    for (double p : {50.0, 90.0, 99.0, 99.9}) {
        auto rank =
            static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(all.size())));
        uint64_t exact = all[rank - 1];
        uint64_t got = a.percentile(p);
        CHECK(got >= exact);
        CHECK(static_cast<double>(got - exact) <= static_cast<double>(exact) / 64.0 + 1);
    }
    CHECK(a.max() == all.back());
    Histogram empty;
    CHECK(empty.percentile(99) == 0);
    Histogram neg;
    neg.record(-5);  // a clock step back counts as 0, never as a huge value
    CHECK(neg.percentile(50) == 0);
}

TEST_CASE("AorPicker: uniform covers every AOR; Zipf 1.0 gives rank 0 about 1/H(n) of picks") {
    AorPicker uni(10, 0, 1);
    std::vector<int> seen(10);
    for (int i = 0; i < 10000; ++i) ++seen[uni.next()];
    for (int c : seen) CHECK(c > 800);

    const uint32_t n = 1000;
    AorPicker zipf(n, 1.0, 1);
    std::vector<int> z(n);
    const int draws = 200000;
    uint32_t largest = 0;
    for (int i = 0; i < draws; ++i) {
        uint32_t k = zipf.next();
        largest = std::max(largest, k);
        if (k < n) ++z[k];
    }
    REQUIRE(largest < n);
    double harmonic = 0;
    for (uint32_t i = 1; i <= n; ++i) harmonic += 1.0 / i;
    CHECK(z[0] / static_cast<double>(draws) == doctest::Approx(1.0 / harmonic).epsilon(0.05));
    CHECK(z[1] / static_cast<double>(draws) == doctest::Approx(0.5 / harmonic).epsilon(0.08));
    CHECK(z[0] > z[9] * 5);
}

TEST_CASE("share: parts add up to the total, differ by at most one, the first take the rest") {
    for (uint64_t total : {0ull, 1ull, 2ull, 15ull, 16ull, 17ull, 64ull, 1000ull}) {
        for (uint64_t parts : {1ull, 2ull, 3ull, 7ull, 16ull, 64ull}) {
            uint64_t sum = 0, lo = UINT64_MAX, hi = 0;
            for (uint64_t i = 0; i < parts; ++i) {
                uint64_t s = share(total, parts, i);
                sum += s;
                lo = std::min(lo, s);
                hi = std::max(hi, s);
                if (i > 0) CHECK(share(total, parts, i - 1) >= s);  // never more for a later part
            }
            CHECK(sum == total);
            CHECK(hi - lo <= 1);
        }
    }
    // 16 sockets over 2 threads: 8 each; 17 over 2: the first thread takes the 9th.
    CHECK(share(16, 2, 0) == 8);
    CHECK(share(16, 2, 1) == 8);
    CHECK(share(17, 2, 0) == 9);
    CHECK(share(17, 2, 1) == 8);
    // Window 64 over 3 threads: 22, 21, 21. Out of range and zero parts: nothing.
    CHECK(share(64, 3, 0) == 22);
    CHECK(share(64, 3, 2) == 21);
    CHECK(share(64, 3, 3) == 0);
    CHECK(share(64, 0, 0) == 0);
}

TEST_CASE("SocketRing: every socket in turn, so each sends the same number of batches") {
    SocketRing ring(16);
    std::vector<int> batches(16);
    for (int i = 0; i < 16 * 100 + 5; ++i) ++batches[ring.next()];
    for (int k = 0; k < 16; ++k) CHECK(batches[k] == (k < 5 ? 101 : 100));
    SocketRing one(1);
    CHECK(one.next() == 0);
    CHECK(one.next() == 0);
    SocketRing none(0);  // treated as one socket, never an index out of range
    CHECK(none.size() == 1);
    CHECK(none.next() == 0);
}
