// The near-cache of DESIGN §7 as a data structure: TTLs, negative entries, CLOCK eviction within
// a fixed number of entries, invalidation, flush, and the rule that a reply read before an
// invalidation (or flush) of its AOR is never stored. No Redis, no clocks: times are arguments.
#include "sipr/location/near_cache.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace sipr::location;

NearCacheOptions opts(uint32_t max_entries = 8, uint32_t ttl = 10'000, uint32_t neg = 1'000) {
    NearCacheOptions o;
    o.ttl_ms = ttl;
    o.negative_ttl_ms = neg;
    o.max_entries = max_entries;
    return o;
}

// Bindings whose text lives in `store` (so a test can scribble over it after insert).
struct Bindings {
    std::vector<std::string> text;
    std::vector<BindingView> views;
    explicit Bindings(std::vector<std::string> contacts, int64_t expires_at = 2'000'000'000'000) {
        text = std::move(contacts);
        for (const std::string& c : text) {
            BindingView v;
            v.contact = c;
            v.call_id = "cid";
            v.received = "192.0.2.1:5060";
            v.user_agent = "ua";
            v.expires_at_ms = expires_at;
            v.q = 500;
            views.push_back(v);
        }
    }
};

std::vector<std::string> contacts_of(const NearCache::Found& f) {
    std::vector<std::string> out;
    for (const BindingView& b : f.bindings) out.emplace_back(b.contact);
    return out;
}

void enable(NearCache& c) {
    (void)c.set_enabled(true);
}

}  // namespace

TEST_CASE("near cache: nothing is stored or served until enabled") {
    NearCache c(opts());
    Bindings b({"sip:a@192.0.2.1"});
    CHECK_FALSE(c.enabled());
    CHECK(c.insert("sip:a@x", c.ticket(), b.views, 0) == NearCache::Insert::Disabled);
    CHECK_FALSE(c.find("sip:a@x", 0).hit);
    (void)c.set_enabled(true);
    // A ticket taken while disabled stays refused after enabling (the read was not tracked).
    NearCache::Ticket before{0, 0};
    CHECK(c.insert("sip:a@x", before, b.views, 0) == NearCache::Insert::Disabled);
    CHECK(c.insert("sip:a@x", c.ticket(), b.views, 0) == NearCache::Insert::Stored);
    CHECK(c.find("sip:a@x", 1).hit);
}

TEST_CASE("near cache: a stored entry owns copies of the bindings") {
    NearCache c(opts());
    enable(c);
    auto b =
        std::make_unique<Bindings>(std::vector<std::string>{"sip:a@192.0.2.1", "sip:a@192.0.2.2"});
    b->views[1].path = b->text[0];  // any view into the caller's memory
    REQUIRE(c.insert("sip:a@x", c.ticket(), b->views, 0) == NearCache::Insert::Stored);
    for (std::string& s : b->text) std::fill(s.begin(), s.end(), '#');
    b.reset();
    NearCache::Found f = c.find("sip:a@x", 5);
    REQUIRE(f.hit);
    CHECK(contacts_of(f) == std::vector<std::string>{"sip:a@192.0.2.1", "sip:a@192.0.2.2"});
    CHECK(f.bindings[1].path == "sip:a@192.0.2.1");
    CHECK(f.bindings[0].q == 500);
    CHECK(f.bindings[0].received == "192.0.2.1:5060");
}

TEST_CASE("near cache: TTL, and the shorter TTL of a negative entry") {
    NearCache c(opts(8, 10'000, 1'000));
    enable(c);
    Bindings b({"sip:a@192.0.2.1"});
    REQUIRE(c.insert("sip:a@x", c.ticket(), b.views, 100) == NearCache::Insert::Stored);
    REQUIRE(c.insert("sip:none@x", c.ticket(), {}, 100) == NearCache::Insert::Stored);
    CHECK(c.size() == 2);
    CHECK(c.find("sip:none@x", 1'099).hit);
    CHECK(c.find("sip:none@x", 1'099).bindings.empty());
    CHECK_FALSE(c.find("sip:none@x", 1'100).hit);  // gone at its TTL, and dropped
    CHECK(c.size() == 1);
    CHECK(c.find("sip:a@x", 10'099).hit);
    CHECK_FALSE(c.find("sip:a@x", 10'100).hit);
    CHECK(c.size() == 0);
}

TEST_CASE("near cache: negative TTL 0 never caches a 404, and drops an older entry") {
    NearCache c(opts(8, 10'000, 0));
    enable(c);
    Bindings b({"sip:a@192.0.2.1"});
    REQUIRE(c.insert("sip:a@x", c.ticket(), b.views, 0) == NearCache::Insert::Stored);
    CHECK(c.insert("sip:a@x", c.ticket(), {}, 1) == NearCache::Insert::Uncacheable);
    CHECK_FALSE(c.find("sip:a@x", 2).hit);
}

TEST_CASE("near cache: an entry beyond 4 KiB of text is not cached") {
    NearCache c(opts());
    enable(c);
    Bindings b({std::string(5000, 'x')});
    CHECK(c.insert("sip:big@x", c.ticket(), b.views, 0) == NearCache::Insert::Uncacheable);
    CHECK(c.size() == 0);
}

TEST_CASE("near cache: an AOR over 1 KiB or over 256 bindings is not cached, and drops its entry") {
    NearCache c(opts());
    enable(c);
    Bindings one({"sip:a@192.0.2.1"});
    const std::string long_aor = "sip:" + std::string(1100, 'a') + "@x";
    CHECK(c.insert(long_aor, c.ticket(), one.views, 0) == NearCache::Insert::Uncacheable);
    CHECK_FALSE(c.find(long_aor, 1).hit);

    REQUIRE(c.insert("sip:many@x", c.ticket(), one.views, 0) == NearCache::Insert::Stored);
    std::vector<std::string> contacts;
    for (int i = 0; i < 257; ++i) contacts.push_back("sip:m@192.0.2." + std::to_string(i % 250));
    Bindings many(contacts);
    CHECK(c.insert("sip:many@x", c.ticket(), many.views, 0) == NearCache::Insert::Uncacheable);
    CHECK_FALSE(c.find("sip:many@x", 1).hit);  // the older answer must not outlive this one
    CHECK(c.size() == 0);
}

TEST_CASE("near cache: an entry's storage shrinks and grows with what it holds") {
    // One buffer per entry holds the views, the AOR and the text: replacing a many-binding
    // answer by a one-binding one and back keeps every field intact.
    NearCache c(opts());
    enable(c);
    std::vector<std::string> contacts;
    for (int i = 0; i < 40; ++i) contacts.push_back("sip:m@192.0.2." + std::to_string(i));
    Bindings many(contacts), one({"sip:one@192.0.2.9"});
    for (int round = 0; round < 3; ++round) {
        REQUIRE(c.insert("sip:a@x", c.ticket(), many.views, 0) == NearCache::Insert::Stored);
        CHECK(contacts_of(c.find("sip:a@x", 1)) == contacts);
        REQUIRE(c.insert("sip:a@x", c.ticket(), one.views, 0) == NearCache::Insert::Stored);
        NearCache::Found f = c.find("sip:a@x", 1);
        REQUIRE(f.bindings.size() == 1);
        CHECK(f.bindings[0].contact == "sip:one@192.0.2.9");
        CHECK(f.bindings[0].call_id == "cid");
        CHECK(f.bindings[0].received == "192.0.2.1:5060");
        CHECK(f.bindings[0].user_agent == "ua");
        CHECK(f.bindings[0].q == 500);
    }
}

TEST_CASE("near cache: a newer reply replaces the entry") {
    NearCache c(opts());
    enable(c);
    Bindings one({"sip:a@192.0.2.1"}), two({"sip:a@192.0.2.2", "sip:a@192.0.2.3"});
    REQUIRE(c.insert("sip:a@x", c.ticket(), one.views, 0) == NearCache::Insert::Stored);
    REQUIRE(c.insert("sip:a@x", c.ticket(), two.views, 0) == NearCache::Insert::Stored);
    CHECK(c.size() == 1);
    CHECK(contacts_of(c.find("sip:a@x", 1)) ==
          std::vector<std::string>{"sip:a@192.0.2.2", "sip:a@192.0.2.3"});
}

TEST_CASE("near cache: invalidation drops the entry") {
    NearCache c(opts());
    enable(c);
    Bindings b({"sip:a@192.0.2.1"});
    REQUIRE(c.insert("sip:a@x", c.ticket(), b.views, 0) == NearCache::Insert::Stored);
    REQUIRE(c.insert("sip:b@x", c.ticket(), b.views, 0) == NearCache::Insert::Stored);
    CHECK(c.invalidate("sip:a@x"));
    CHECK_FALSE(c.invalidate("sip:a@x"));
    CHECK_FALSE(c.find("sip:a@x", 1).hit);
    CHECK(c.find("sip:b@x", 1).hit);
    CHECK(c.size() == 1);
}

TEST_CASE("near cache: a reply read before an invalidation of its AOR is never stored") {
    // The invalidation comes on another connection: it can be processed before the older reply.
    NearCache c(opts());
    enable(c);
    Bindings old_value({"sip:a@192.0.2.1"});
    NearCache::Ticket t = c.ticket();  // HGETALL sent
    (void)c.invalidate("sip:a@x");     // the key changed; its invalidation arrives first
    CHECK(c.insert("sip:a@x", t, old_value.views, 0) == NearCache::Insert::Raced);
    CHECK_FALSE(c.find("sip:a@x", 1).hit);
    // Invalidations of other AORs do not spoil a reply...
    NearCache::Ticket t2 = c.ticket();
    (void)c.invalidate("sip:b@x");
    (void)c.invalidate("sip:c@x");
    CHECK(c.insert("sip:a@x", t2, old_value.views, 0) == NearCache::Insert::Stored);
    // ...and a read sent after the invalidation is fine.
    (void)c.invalidate("sip:a@x");
    NearCache::Ticket t3 = c.ticket();
    CHECK(c.insert("sip:a@x", t3, old_value.views, 0) == NearCache::Insert::Stored);
}

TEST_CASE("near cache: more invalidations in flight than the ring remembers refuse the reply") {
    NearCache c(opts());
    enable(c);
    Bindings b({"sip:a@192.0.2.1"});
    NearCache::Ticket t = c.ticket();
    for (std::size_t i = 0; i < NearCache::kRing; ++i)
        (void)c.invalidate("sip:other" + std::to_string(i) + "@x");
    CHECK(c.insert("sip:a@x", t, b.views, 0) == NearCache::Insert::Stored);  // exactly the ring
    NearCache::Ticket t2 = c.ticket();
    for (std::size_t i = 0; i <= NearCache::kRing; ++i)
        (void)c.invalidate("sip:other" + std::to_string(i) + "@x");
    CHECK(c.insert("sip:a@x", t2, b.views, 0) == NearCache::Insert::Raced);  // one too many
}

TEST_CASE("near cache: flush and disable drop everything and outdate reads in flight") {
    NearCache c(opts());
    enable(c);
    Bindings b({"sip:a@192.0.2.1"});
    REQUIRE(c.insert("sip:a@x", c.ticket(), b.views, 0) == NearCache::Insert::Stored);
    NearCache::Ticket t = c.ticket();
    CHECK(c.flush() == 1);
    CHECK(c.size() == 0);
    CHECK_FALSE(c.find("sip:a@x", 1).hit);
    CHECK(c.insert("sip:a@x", t, b.views, 0) == NearCache::Insert::Raced);

    REQUIRE(c.insert("sip:a@x", c.ticket(), b.views, 0) == NearCache::Insert::Stored);
    NearCache::Ticket t2 = c.ticket();
    CHECK(c.set_enabled(false) == 1);
    CHECK(c.insert("sip:a@x", t2, b.views, 0) == NearCache::Insert::Disabled);
    (void)c.set_enabled(true);  // tracking confirmed again: the old read is still refused
    CHECK(c.insert("sip:a@x", t2, b.views, 0) == NearCache::Insert::Raced);
    CHECK(c.size() == 0);
}

TEST_CASE("near cache: CLOCK keeps recently used entries and evicts expired ones first") {
    NearCache c(opts(4, 10'000, 100));
    enable(c);
    Bindings b({"sip:a@192.0.2.1"});
    for (const char* k : {"sip:1@x", "sip:2@x", "sip:3@x"})
        REQUIRE(c.insert(k, c.ticket(), b.views, 0) == NearCache::Insert::Stored);
    REQUIRE(c.insert("sip:neg@x", c.ticket(), {}, 0) == NearCache::Insert::Stored);
    CHECK(c.size() == 4);
    // Every positive entry used; the negative one past its TTL: it goes first.
    for (const char* k : {"sip:1@x", "sip:2@x", "sip:3@x"}) CHECK(c.find(k, 150).hit);
    REQUIRE(c.insert("sip:4@x", c.ticket(), b.views, 200) == NearCache::Insert::Stored);
    CHECK(c.size() == 4);
    for (const char* k : {"sip:1@x", "sip:2@x", "sip:3@x", "sip:4@x"}) CHECK(c.find(k, 300).hit);
    // All referenced now: the sweep clears every bit, then takes the first (1). Never above 4.
    REQUIRE(c.insert("sip:5@x", c.ticket(), b.views, 400) == NearCache::Insert::Stored);
    CHECK(c.size() == 4);
    CHECK_FALSE(c.find("sip:1@x", 401).hit);
    CHECK(c.find("sip:5@x", 401).hit);  // used again: referenced
    // The hand moves on to 2, whose bit the last sweep cleared: 2 goes, 3 4 5 stay.
    REQUIRE(c.insert("sip:6@x", c.ticket(), b.views, 500) == NearCache::Insert::Stored);
    CHECK(c.size() == 4);
    CHECK_FALSE(c.find("sip:2@x", 501).hit);
    for (const char* k : {"sip:3@x", "sip:4@x", "sip:5@x", "sip:6@x"}) CHECK(c.find(k, 501).hit);
}

TEST_CASE("near cache: random operations agree with a simple model") {
    // A model (std::map) of what must be there: an entry is present in the cache only if the
    // model has it, with the same contacts; at most max_entries; hits of the model's keys may
    // miss only through eviction.
    constexpr uint32_t kMax = 64;
    NearCache c(opts(kMax, 1'000'000, 1'000'000));
    enable(c);
    std::map<std::string, std::string> model;
    std::mt19937 rng(7);
    uint64_t now = 0;
    for (int i = 0; i < 200'000; ++i) {
        std::string aor = "sip:u" + std::to_string(rng() % 200) + "@x";
        unsigned op = rng() % 10;
        ++now;
        if (op < 5) {
            std::string contact = "sip:c" + std::to_string(rng()) + "@192.0.2.9";
            Bindings b({contact});
            REQUIRE(c.insert(aor, c.ticket(), b.views, now) == NearCache::Insert::Stored);
            model[aor] = contact;
        } else if (op < 8) {
            NearCache::Found f = c.find(aor, now);
            if (f.hit) {
                REQUIRE(model.count(aor) == 1);
                REQUIRE(f.bindings.size() == 1);
                CHECK(f.bindings[0].contact == model[aor]);
            }
        } else if (op < 9) {
            (void)c.invalidate(aor);
            model.erase(aor);
        } else if (rng() % 100 == 0) {
            (void)c.flush();
            model.clear();
        }
        REQUIRE(c.size() <= kMax);
    }
    // What the cache holds is a subset of the model, exactly.
    std::size_t found = 0;
    for (const auto& [aor, contact] : model) {
        NearCache::Found f = c.find(aor, now);
        if (!f.hit) continue;
        ++found;
        CHECK(f.bindings[0].contact == contact);
    }
    CHECK(found == c.size());
}

TEST_CASE("near cache: aor_of_location_key") {
    CHECK(aor_of_location_key("sipr:loc:{sip:alice@example.com}") == "sip:alice@example.com");
    CHECK(aor_of_location_key("sipr:loc:{sip:a}b@example.com}") == "sip:a}b@example.com");
    CHECK(aor_of_location_key("sipr:sub:{sip:alice@example.com}").empty());
    CHECK(aor_of_location_key("sipr:loc:sip:alice@example.com").empty());
    CHECK(aor_of_location_key("sipr:loc:{}").empty());
    CHECK(aor_of_location_key("").empty());
}
