// "The steady state allocates nothing" (redirect.cpp, DESIGN §4): once warm, a whole INVITE ->
// 302 makes no heap allocation through operator new - the bytes in, the Redirector, the store,
// the Redis client and its reply, the 302 written into the Sender's buffer. Twice: uncached
// (RedisStore on a real redis-server: one HGETALL per INVITE) and cached (CachingStore with its
// CacheTracker: the near-cache answers). Counted with support/alloc_counter.h on this thread;
// hiredis and libuv allocate with malloc, which that does not see.
#include <doctest/doctest.h>

#include "support/alloc_counter.h"
#include "support/peer.h"
#include "support/redis_server.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "sipr/base/stats.h"
#include "sipr/location/admin.h"
#include "sipr/location/binding.h"
#include "sipr/location/cache_tracker.h"
#include "sipr/location/caching_store.h"
#include "sipr/location/redis_client.h"
#include "sipr/location/redis_store.h"
#include "sipr/location/schema.h"
#include "sipr/redirect/redirect.h"
#include "sipr/sip/stats.h"

namespace {

using namespace sipr;

constexpr const char* kAor = "sip:bob@example.com";

const std::string kInvite =
    "INVITE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@example.com>\r\n"
    "From: Alice <sip:alice@example.org>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710@pc33.example.org\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@192.0.2.10:5062>\r\n"
    "Content-Length: 0\r\n\r\n";

uint64_t mono_us() noexcept {
    return uv_hrtime() / 1000;
}
uint64_t mono_ms() noexcept {
    return uv_hrtime() / 1'000'000;
}

// Writes in place into its own buffer and keeps a copy of the last response; allocates nothing.
class BufferSender final : public sip::Sender {
  public:
    bool send(std::string_view bytes, const sip::Peer&, uint16_t) noexcept override {
        last_len = std::min(bytes.size(), last.size());
        std::memcpy(last.data(), bytes.data(), last_len);
        ++sent;
        return true;
    }
    [[nodiscard]] std::span<char> send_buffer() noexcept override { return buffer; }
    [[nodiscard]] std::string_view last_response() const { return {last.data(), last_len}; }

    std::array<char, 1500> buffer{};
    std::array<char, 1500> last{};
    std::size_t last_len = 0;
    uint64_t sent = 0;
};

// The bindings of kAor, written as the registrar writes them (register.lua, via location::Admin).
void seed_bindings(test::RedisServer& server) {
    location::RegisterChanges ch;
    ch.aor = std::string(kAor);
    ch.call_id = "reg-1";
    ch.cseq = 1;
    for (int i = 1; i <= 2; ++i) {
        location::Binding b;
        b.contact = "sip:bob@192.0.2." + std::to_string(20 + i) + ":5060";
        b.cseq = 1;
        b.call_id = ch.call_id;
        b.q = static_cast<uint16_t>(1000 - i);
        b.received = "192.0.2.9:5060";
        ch.contacts.push_back({location::binding_key(location::ContactUri{b.contact}, b.instance),
                               3600, location::pack_binding_tail(b)});
    }
    location::Admin admin;
    REQUIRE(admin.open(server.url(), false, 2000).empty());
    REQUIRE(admin.apply(ch).empty());
}

redirect::Config config() {
    redirect::Config c;
    c.tag_key = base::derive_sip_key("alloc test");
    return c;
}

struct Rig {
    test::TestLoop loop;
    test::RedisServer server;
    BufferSender sender;
    sip::MessageStats messages;
    redirect::RedirectStats stats;
    sip::Peer peer = test::make_peer("192.0.2.10", 5062);
    std::unique_ptr<location::RedisClient> client;
    std::unique_ptr<location::RedisStore> store;

    void connect() {
        seed_bindings(server);
        client = std::make_unique<location::RedisClient>(loop.get(), server.url(),
                                                         location::RedisOptions{});
    }
    ~Rig() {
        if (client) {
            client->stop();
            loop.drain();
        }
    }

    // One INVITE in, its answer out; false when none came. Allocates nothing of its own.
    bool invite(redirect::Redirector& r) {
        const uint64_t before = sender.sent;
        r.on_datagram(kInvite, peer);
        return loop.run_until([&] { return sender.sent > before; });
    }

    // Warms up, then counts `n` INVITEs; returns the allocations (and checks every answer).
    std::size_t count_steady_state(redirect::Redirector& r, int n) {
        // The counter sees this path: the first INVITE fills the pools (and the cache).
        std::size_t cold = 0;
        bool cold_answered = false;
        {
            test::AllocationCounter counter;
            cold_answered = invite(r);
            cold = counter.stop();
        }
        REQUIRE(cold_answered);
        CHECK(cold > 0);
        for (int i = 1; i < 64; ++i) REQUIRE(invite(r));
        const uint64_t ok_before = messages.responses[302].get();
        bool all_answered = true;
        std::size_t allocations = 0;
        {
            test::AllocationCounter counter;
            for (int i = 0; i < n; ++i) all_answered &= invite(r);
            allocations = counter.stop();
        }
        CHECK(all_answered);
        CHECK(messages.responses[302].get() == ok_before + static_cast<uint64_t>(n));
        std::string_view resp = sender.last_response();
        CHECK(resp.substr(0, 20) == "SIP/2.0 302 Moved Te");
        CHECK(resp.find("sip:bob@192.0.2.21:5060") != std::string_view::npos);
        CHECK(resp.find("sip:bob@192.0.2.22:5060") != std::string_view::npos);
        if (allocations != 0) MESSAGE("where:\n" << test::counted_stacks());
        return allocations;
    }
};

}  // namespace

TEST_SUITE_BEGIN("redirect");

TEST_CASE("alloc: a warm uncached INVITE -> 302 (RedisStore, real Redis) allocates nothing") {
    Rig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    rig.client->start();
    REQUIRE(rig.loop.run_until([&] { return rig.client->ready(); }));
    rig.store = std::make_unique<location::RedisStore>(*rig.client);
    redirect::Redirector r(config(), *rig.store, rig.sender, rig.messages, rig.stats, &mono_us,
                           &location::system_clock_ms);
    CHECK(rig.count_steady_state(r, 200) == 0);
}

TEST_CASE("alloc: a warm cached INVITE -> 302 (near-cache hit) allocates nothing") {
    Rig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    rig.store = std::make_unique<location::RedisStore>(*rig.client);
    base::Counter hits, misses, invalidations, flushes;
    base::Gauge entries;
    location::NearCacheOptions nco;
    nco.ttl_ms = 60'000;
    nco.max_entries = 1024;
    location::CachingStore cache(
        *rig.store, nco, location::CacheMetrics{hits, misses, invalidations, flushes, entries},
        &location::system_clock_ms, &mono_ms);
    location::RedisOptions inval_opts;
    inval_opts.client_name = "sipr-alloc-test-inval";
    location::CacheTracker tracker(rig.loop.get(), *rig.client, cache, rig.server.url(), inval_opts,
                                   1000);
    rig.client->on_state(
        [](void* ctx, location::RedisClient::State s) noexcept {
            static_cast<location::CacheTracker*>(ctx)->on_data_state(s);
        },
        &tracker);
    tracker.start();
    rig.client->start();
    REQUIRE(
        rig.loop.run_until([&] { return tracker.state() == location::CacheTracker::State::On; }));
    REQUIRE(cache.enabled());

    redirect::Redirector r(config(), cache, rig.sender, rig.messages, rig.stats, &mono_us,
                           &location::system_clock_ms);
    CHECK(rig.count_steady_state(r, 200) == 0);
    CHECK(misses.get() == 1);  // the first INVITE; every other one a hit
    CHECK(hits.get() == 64 + 200 - 1);

    tracker.stop();
    rig.client->stop();
    rig.loop.drain();
}

TEST_SUITE_END();
