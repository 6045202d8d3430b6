// CachingStore (DESIGN §7) against a fake inner store and fake clocks: hits answered before
// lookup() returns, misses stored on their reply, the invalidation race (an invalidation handled
// before the older read reply it invalidates), flushes, tracking lost and regained, expiry of a
// cached binding, and the counters of DESIGN §9.
#include "sipr/location/caching_store.h"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "sipr/location/stats.h"

namespace {

using namespace sipr;
using namespace sipr::location;

int64_t g_wall = 1'700'000'000'000;
uint64_t g_mono = 5'000;
int64_t wall() noexcept {
    return g_wall;
}
uint64_t mono() noexcept {
    return g_mono;
}

// Keeps look-ups pending until the test answers them with the bindings it holds then.
class FakeInner final : public LookupStore {
  public:
    struct Pending {
        std::string aor;
        LookupCallback cb;
        void* ctx;
    };
    std::vector<Pending> pending;
    std::size_t asked = 0;
    StoreError refuse = StoreError::None;
    // The "Redis" contents: AOR -> contacts (expiry per contact in expires).
    std::vector<std::string> contacts;
    std::vector<int64_t> expires;

    StoreError lookup(std::string_view aor, LookupCallback cb, void* ctx) noexcept override {
        ++asked;
        if (refuse != StoreError::None) return refuse;
        pending.push_back(Pending{std::string(aor), cb, ctx});
        return StoreError::None;
    }
    bool available() const noexcept override { return true; }

    void set(std::vector<std::string> cs, int64_t expires_at = 1'700'000'600'000) {
        contacts = std::move(cs);
        expires.assign(contacts.size(), expires_at);
    }
    // Answers the oldest pending look-up with the current contents (or `err`).
    void answer(StoreError err = StoreError::None) {
        REQUIRE(!pending.empty());
        Pending p = pending.front();
        pending.erase(pending.begin());
        std::vector<std::string> text = contacts;  // dies after the call, as a hiredis reply
        std::vector<BindingView> views(text.size());
        for (std::size_t i = 0; i < text.size(); ++i) {
            views[i].contact = text[i];
            views[i].expires_at_ms = expires[i];
        }
        LookupReply r;
        r.error = err;
        if (err == StoreError::None) r.bindings = views;
        p.cb(p.ctx, r);
        for (std::string& s : text) std::fill(s.begin(), s.end(), '#');
    }
};

// What the caller of lookup() saw.
struct Seen {
    int calls = 0;
    bool from_cache = false;
    StoreError error = StoreError::None;
    std::vector<std::string> contacts;
};
void on_reply(void* ctx, const LookupReply& r) noexcept {
    auto* s = static_cast<Seen*>(ctx);
    ++s->calls;
    s->from_cache = r.from_cache;
    s->error = r.error;
    s->contacts.clear();
    for (const BindingView& b : r.bindings) s->contacts.emplace_back(b.contact);
}

struct Rig {
    FakeInner inner;
    location::StoreStats stats;
    std::unique_ptr<CachingStore> store;
    explicit Rig(uint32_t ttl = 10'000, uint32_t neg = 1'000, uint32_t max = 100) {
        g_wall = 1'700'000'000'000;
        g_mono = 5'000;
        NearCacheOptions o;
        o.ttl_ms = ttl;
        o.negative_ttl_ms = neg;
        o.max_entries = max;
        CacheMetrics m{stats.cache_hits, stats.cache_misses, stats.cache_invalidations,
                       stats.cache_flushes, stats.cache_entries};
        store = std::make_unique<CachingStore>(inner, o, m, &wall, &mono);
        store->set_enabled(true);
    }
    // One look-up that must be a hit: answered before lookup() returns.
    Seen hit(std::string_view aor = "sip:alice@example.com") {
        Seen s;
        REQUIRE(store->lookup(aor, &on_reply, &s) == StoreError::None);
        REQUIRE(s.calls == 1);
        return s;
    }
    // A look-up that goes to the inner store and is answered with its contents.
    Seen miss(std::string_view aor = "sip:alice@example.com") {
        std::size_t before = inner.asked;
        Seen s;
        REQUIRE(store->lookup(aor, &on_reply, &s) == StoreError::None);
        REQUIRE(inner.asked == before + 1);
        CHECK(s.calls == 0);
        inner.answer();
        CHECK(s.calls == 1);
        return s;
    }
};

const std::string kKey = "sipr:loc:{sip:alice@example.com}";

}  // namespace

TEST_CASE("caching store: a miss is stored, the next look-up is a hit answered at once") {
    Rig rig;
    rig.inner.set({"sip:alice@192.0.2.1"});
    Seen first = rig.miss();
    CHECK(first.contacts == std::vector<std::string>{"sip:alice@192.0.2.1"});
    CHECK_FALSE(first.from_cache);
    Seen second = rig.hit();
    CHECK(second.calls == 1);  // before lookup() returned
    CHECK(second.from_cache);
    CHECK(second.contacts == std::vector<std::string>{"sip:alice@192.0.2.1"});
    CHECK(rig.inner.asked == 1);
    CHECK(rig.stats.cache_hits.get() == 1);
    CHECK(rig.stats.cache_misses.get() == 1);
    CHECK(rig.stats.cache_entries.get() == 1);
}

TEST_CASE("caching store: an invalidation drops the entry; the next look-up reads again") {
    Rig rig;
    rig.inner.set({"sip:alice@192.0.2.1"});
    (void)rig.miss();
    rig.inner.set({"sip:alice@192.0.2.2"});
    rig.store->on_invalidated(kKey);
    CHECK(rig.stats.cache_invalidations.get() == 1);
    CHECK(rig.stats.cache_entries.get() == 0);
    Seen s = rig.miss();
    CHECK(s.contacts == std::vector<std::string>{"sip:alice@192.0.2.2"});
    CHECK(rig.hit().contacts == std::vector<std::string>{"sip:alice@192.0.2.2"});
}

TEST_CASE("caching store: the invalidation race - never store a reply older than an invalidation") {
    // HGETALL sent; Redis answers it (old value), then the registrar writes and Redis publishes
    // the invalidation, which this worker processes before the (older) reply. Storing that reply
    // would serve the old binding until the TTL: it must be handed on but not stored.
    Rig rig;
    rig.inner.set({"sip:alice@192.0.2.1"});
    Seen s;
    REQUIRE(rig.store->lookup("sip:alice@example.com", &on_reply, &s) == StoreError::None);
    rig.store->on_invalidated(kKey);  // processed first
    rig.inner.answer();               // the old value arrives after
    CHECK(s.calls == 1);
    CHECK(s.contacts == std::vector<std::string>{"sip:alice@192.0.2.1"});  // answered, once
    CHECK(rig.stats.cache_entries.get() == 0);
    rig.inner.set({"sip:alice@192.0.2.2"});
    Seen next = rig.miss();  // not a hit of the old value
    CHECK(next.contacts == std::vector<std::string>{"sip:alice@192.0.2.2"});
}

TEST_CASE("caching store: an invalidation of another key does not spoil a read in flight") {
    Rig rig;
    rig.inner.set({"sip:alice@192.0.2.1"});
    Seen s;
    REQUIRE(rig.store->lookup("sip:alice@example.com", &on_reply, &s) == StoreError::None);
    rig.store->on_invalidated("sipr:loc:{sip:bob@example.com}");
    rig.store->on_invalidated("sipr:sub:{sip:alice@example.com}");  // not a location key
    rig.inner.answer();
    CHECK(rig.hit().calls == 1);
    CHECK(rig.stats.cache_invalidations.get() == 2);
}

TEST_CASE("caching store: FLUSHALL (null invalidation) drops everything and reads in flight") {
    Rig rig;
    rig.inner.set({"sip:alice@192.0.2.1"});
    (void)rig.miss("sip:alice@example.com");
    (void)rig.miss("sip:bob@example.com");
    CHECK(rig.stats.cache_entries.get() == 2);
    Seen s;
    REQUIRE(rig.store->lookup("sip:carol@example.com", &on_reply, &s) == StoreError::None);
    rig.store->on_flush_all();
    rig.inner.answer();
    CHECK(rig.stats.cache_flushes.get() == 1);
    CHECK(rig.stats.cache_entries.get() == 0);
    std::size_t asked = rig.inner.asked;
    (void)rig.miss("sip:alice@example.com");
    (void)rig.miss("sip:carol@example.com");
    CHECK(rig.inner.asked == asked + 2);
}

TEST_CASE("caching store: tracking lost - flushed, every look-up goes to Redis, nothing stored") {
    Rig rig;
    rig.inner.set({"sip:alice@192.0.2.1"});
    (void)rig.miss();
    Seen inflight;
    REQUIRE(rig.store->lookup("sip:bob@example.com", &on_reply, &inflight) == StoreError::None);
    rig.store->set_enabled(false);
    CHECK(rig.stats.cache_flushes.get() == 1);
    CHECK(rig.stats.cache_entries.get() == 0);
    rig.inner.answer();  // bob's reply: read before the loss, not stored
    (void)rig.miss();
    (void)rig.miss();  // still not stored while disabled
    CHECK(rig.stats.cache_hits.get() == 0);
    // A read sent while disabled and answered after tracking is back is not stored either
    // (it was not tracked).
    Seen s;
    REQUIRE(rig.store->lookup("sip:alice@example.com", &on_reply, &s) == StoreError::None);
    rig.store->set_enabled(true);
    rig.inner.answer();
    (void)rig.miss();  // now stored
    CHECK(rig.hit().calls == 1);
    CHECK(rig.stats.cache_hits.get() == 1);
}

TEST_CASE("caching store: a cached binding past its own expiry is never served") {
    Rig rig(60'000);
    rig.inner.contacts = {"sip:alice@192.0.2.1", "sip:alice@192.0.2.2"};
    rig.inner.expires = {g_wall + 1'000, g_wall + 600'000};
    (void)rig.miss();
    CHECK(rig.hit().contacts.size() == 2);
    g_wall += 999;
    CHECK(rig.hit().contacts.size() == 2);
    g_wall += 1;  // the first binding expires now; the cache TTL is far away
    Seen s = rig.hit();
    CHECK(s.calls == 1);
    CHECK(s.contacts == std::vector<std::string>{"sip:alice@192.0.2.2"});
    g_wall += 600'000;
    Seen none = rig.hit();
    CHECK(none.calls == 1);
    CHECK(none.contacts.empty());  // 404, never an expired contact
}

TEST_CASE("caching store: TTL; negative entries live the negative TTL") {
    Rig rig(10'000, 1'000);
    rig.inner.set({"sip:alice@192.0.2.1"});
    (void)rig.miss();
    rig.inner.set({});
    (void)rig.miss("sip:nobody@example.com");
    g_mono += 999;
    CHECK(rig.hit("sip:nobody@example.com").calls == 1);
    CHECK(rig.hit("sip:nobody@example.com").contacts.empty());
    g_mono += 1;
    Seen s;
    REQUIRE(rig.store->lookup("sip:nobody@example.com", &on_reply, &s) == StoreError::None);
    CHECK(s.calls == 0);  // went to the inner store
    rig.inner.answer();
    g_mono += 9'000;
    Seen alice;
    REQUIRE(rig.store->lookup("sip:alice@example.com", &on_reply, &alice) == StoreError::None);
    CHECK(alice.calls == 0);  // alice's 10 s are over too: went to the inner store
    rig.inner.answer();
    CHECK(alice.calls == 1);
}

TEST_CASE("caching store: store errors are handed on and never cached") {
    Rig rig;
    rig.inner.set({"sip:alice@192.0.2.1"});
    Seen s;
    REQUIRE(rig.store->lookup("sip:alice@example.com", &on_reply, &s) == StoreError::None);
    rig.inner.answer(StoreError::Timeout);
    CHECK(s.error == StoreError::Timeout);
    CHECK(rig.stats.cache_entries.get() == 0);
    rig.inner.refuse = StoreError::Unavailable;
    Seen r;
    CHECK(rig.store->lookup("sip:alice@example.com", &on_reply, &r) == StoreError::Unavailable);
    CHECK(r.calls == 0);  // refused: never called back
}

TEST_CASE("caching store: bounded by max entries") {
    Rig rig(10'000, 1'000, 8);
    rig.inner.set({"sip:x@192.0.2.1"});
    for (int i = 0; i < 50; ++i) (void)rig.miss("sip:u" + std::to_string(i) + "@example.com");
    CHECK(rig.store->cache().size() == 8);
    CHECK(rig.stats.cache_entries.get() == 8);
}
