// The near-cache's hit path on one core: N AORs (one binding each, as a registered phone has)
// in a cache sized like sip-redirectd's default, looked up in a random order, as
// CachingStore::lookup does before answering from the cache. Between look-ups it can stream
// through a scratch buffer (--pollute KIB) to stand for the parsing and sending that evict the
// cache's lines in the daemon. Five timed runs; prints ns per find() of each and the median.
//
//   cache_bench [--aors N] [--entries M] [--pollute KIB] [--finds F] [--runs R]
//
// A checksum of the results is printed so the compiler cannot drop the work.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "sipr/location/near_cache.h"

namespace {

using namespace sipr::location;
using Clock = std::chrono::steady_clock;

unsigned long arg(int argc, char** argv, const char* name, unsigned long def) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], name) == 0) return std::strtoul(argv[i + 1], nullptr, 10);
    return def;
}

}  // namespace

int main(int argc, char** argv) {
    const auto aors = arg(argc, argv, "--aors", 10000);
    const auto entries = arg(argc, argv, "--entries", 100000);
    const auto pollute_kib = arg(argc, argv, "--pollute", 0);
    const auto finds = arg(argc, argv, "--finds", 2000000);
    const auto runs = arg(argc, argv, "--runs", 5);

    NearCacheOptions o;
    o.ttl_ms = 60000;
    o.negative_ttl_ms = 0;
    o.max_entries = static_cast<uint32_t>(entries);
    NearCache cache(o);
    (void)cache.set_enabled(true);

    std::vector<std::string> names;
    names.reserve(aors);
    for (unsigned long i = 0; i < aors; ++i)
        names.push_back("sip:user" + std::to_string(100000 + i) + "@bench.example");
    for (const std::string& n : names) {
        std::string contact = n.substr(0, n.find('@')) + "@192.0.2.7:5060;transport=udp";
        BindingView b;
        b.expires_at_ms = 4'000'000'000'000;
        b.contact = contact;
        b.call_id = "a84b4c76e66710@pc33.atlanta.example.com";
        b.received = "192.0.2.7:5060";
        b.user_agent = "Bench/1.0";
        if (cache.insert(n, cache.ticket(), {&b, 1}, 0) != NearCache::Insert::Stored) {
            std::fprintf(stderr, "cache_bench: insert refused\n");
            return 1;
        }
    }
    std::mt19937_64 rng(42);
    std::vector<uint32_t> order(1 << 20);
    for (uint32_t& k : order) k = static_cast<uint32_t>(rng() % aors);
    std::vector<char> scratch(pollute_kib * 1024 + 64, 1);

    std::vector<double> ns;
    uint64_t sum = 0;
    for (unsigned long r = 0; r < runs; ++r) {
        auto t0 = Clock::now();
        std::size_t p = 0;
        for (unsigned long i = 0; i < finds; ++i) {
            NearCache::Found f = cache.find(names[order[i & (order.size() - 1)]], 1);
            sum += f.hit ? f.bindings[0].contact.size() : 1;
            if (pollute_kib != 0) {
                // 4 KiB per look-up, about what a datagram's parse and answer touch.
                for (int k = 0; k < 64; ++k, p = (p + 64) % (scratch.size() - 64))
                    sum += static_cast<unsigned char>(scratch[p]++);
            }
        }
        double t = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
        ns.push_back(t / static_cast<double>(finds));
        std::printf("run %lu: %.1f ns per find\n", r + 1, ns.back());
    }
    std::sort(ns.begin(), ns.end());
    std::printf(
        "median: %.1f ns per find (%lu AORs, %lu entries, pollute %lu KiB; checksum %llu)\n",
        ns[ns.size() / 2], aors, entries, pollute_kib, static_cast<unsigned long long>(sum));
    return 0;
}
