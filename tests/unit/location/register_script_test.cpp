// The registrar's store logic as it runs: RedisStore::apply_register and lookup against the real
// register.lua on a real redis-server (tests/unit/support/redis_server.h), asserting the script's
// own replies (RFC 3261 §10.3 steps 6-8, DESIGN §5-6). Then the C++ model of the script that the
// registrar's unit tests and fuzz target use (tests/unit/support/register_model.h) is run on the
// same changes as the script and must give the same error, reply and hash, so the two cannot
// drift.
#include <doctest/doctest.h>

#include "support/redis_server.h"
#include "support/register_model.h"

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "sipr/location/binding.h"
#include "sipr/location/redis_client.h"
#include "sipr/location/redis_store.h"
#include "sipr/location/schema.h"

namespace {

using namespace sipr;
using location::RegisterChanges;
using location::StoreError;
using test::RegisterTable;

constexpr const char* kAor = "sip:alice@example.com";

// The packed tail of a binding for `contact` with this Call-ID and CSeq (what the registrar
// sends).
std::string tail(const std::string& contact, const std::string& call_id, uint32_t cseq,
                 uint16_t q = 1000) {
    location::Binding b;
    b.contact = contact;
    b.call_id = call_id;
    b.cseq = cseq;
    b.q = q;
    b.received = "192.0.2.10:5060";
    b.user_agent = "unit";
    return location::pack_binding_tail(b);
}

// A packed binding written directly (a seed), expiring at `exp_ms`.
std::string packed(const std::string& contact, const std::string& call_id, uint32_t cseq,
                   int64_t exp_ms, int64_t upd_ms) {
    location::Binding b;
    b.contact = contact;
    b.call_id = call_id;
    b.cseq = cseq;
    b.expires_at_ms = exp_ms;
    b.updated_at_ms = upd_ms;
    b.received = "192.0.2.10:5060";
    return location::pack_binding(b);
}

location::ContactChange contact(const std::string& key, uint32_t expires_s,
                                const std::string& call_id, uint32_t cseq) {
    return location::ContactChange{key, expires_s, expires_s == 0 ? "" : tail(key, call_id, cseq)};
}

RegisterChanges changes(const std::string& call_id, uint32_t cseq,
                        std::vector<location::ContactChange> contacts, uint32_t max_contacts = 10,
                        bool evict = false) {
    RegisterChanges ch;
    ch.aor = kAor;
    ch.call_id = call_id;
    ch.cseq = cseq;
    ch.contacts = std::move(contacts);
    ch.max_contacts = max_contacts;
    ch.evict_oldest = evict;
    return ch;
}

struct Result {
    bool answered = false;
    int calls = 0;
    StoreError error = StoreError::None;
    int64_t now_ms = 0;
    std::vector<location::Binding> bindings;  // owning copies of the reply's views
    // The reply's bindings packed again, sorted (the script answers in hash order).
    [[nodiscard]] std::vector<std::string> packed() const {
        std::vector<std::string> out;
        for (const location::Binding& b : bindings) out.push_back(location::pack_binding(b));
        std::sort(out.begin(), out.end());
        return out;
    }
    [[nodiscard]] const location::Binding* find(const std::string& contact) const {
        for (const location::Binding& b : bindings)
            if (b.contact == contact) return &b;
        return nullptr;
    }
};

// A RedisStore on a RedisClient on a real redis-server.
struct ScriptRig {
    test::TestLoop loop;
    test::RedisServer server;
    std::unique_ptr<location::RedisClient> client;
    std::unique_ptr<location::RedisStore> store;

    void connect() {
        client = std::make_unique<location::RedisClient>(loop.get(), server.url(),
                                                         location::RedisOptions{});
        client->start();
        REQUIRE(loop.run_until([&] { return client->ready(); }));
        store = std::make_unique<location::RedisStore>(*client);
    }
    ~ScriptRig() {
        if (client) {
            client->stop();
            loop.drain();
        }
    }

    Result apply(const RegisterChanges& ch) {
        Result r;
        StoreError e = store->apply_register(
            ch,
            [](void* ctx, const location::RegisterReply& reply) noexcept {
                auto* res = static_cast<Result*>(ctx);
                ++res->calls;
                res->answered = true;
                res->error = reply.error;
                res->now_ms = reply.now_ms;
                for (const location::BindingView& v : reply.bindings)
                    res->bindings.push_back(location::to_binding(v));
            },
            &r);
        REQUIRE(e == StoreError::None);
        REQUIRE(loop.run_until([&] { return r.answered; }));
        loop.run_for(1);
        CHECK(r.calls == 1);
        return r;
    }

    Result lookup(const std::string& aor) {
        Result r;
        StoreError e = store->lookup(
            aor,
            [](void* ctx, const location::LookupReply& reply) noexcept {
                auto* res = static_cast<Result*>(ctx);
                ++res->calls;
                res->answered = true;
                res->error = reply.error;
                for (const location::BindingView& v : reply.bindings)
                    res->bindings.push_back(location::to_binding(v));
            },
            &r);
        REQUIRE(e == StoreError::None);
        REQUIRE(loop.run_until([&] { return r.answered; }));
        CHECK(r.calls == 1);
        return r;
    }

    // The AOR's hash as Redis holds it.
    RegisterTable hash() {
        test::ReplyPtr r = server.command({"HGETALL", location::location_key(kAor)});
        REQUIRE(r);
        REQUIRE(r->type == REDIS_REPLY_ARRAY);
        RegisterTable t;
        for (std::size_t i = 0; i + 1 < r->elements; i += 2)
            t[std::string(r->element[i]->str, r->element[i]->len)] =
                std::string(r->element[i + 1]->str, r->element[i + 1]->len);
        return t;
    }
    void hset(const std::string& field, const std::string& value) {
        test::ReplyPtr r = server.command({"HSET", location::location_key(kAor), field, value});
        REQUIRE(r);
        REQUIRE(r->type == REDIS_REPLY_INTEGER);
    }
    long long pttl() {
        test::ReplyPtr r = server.command({"PTTL", location::location_key(kAor)});
        REQUIRE(r);
        return r->integer;
    }
    int64_t redis_time_ms() {
        test::ReplyPtr r = server.command({"TIME"});
        REQUIRE(r);
        REQUIRE(r->elements == 2);
        return std::stoll(r->element[0]->str) * 1000 + std::stoll(r->element[1]->str) / 1000;
    }
};

std::vector<std::string> values(const RegisterTable& t) {
    std::vector<std::string> out;
    for (const auto& kv : t) out.push_back(kv.second);
    std::sort(out.begin(), out.end());
    return out;
}

// One registration event as register.lua appends it to the stream (README "Events").
struct Event {
    std::string id;
    std::map<std::string, std::string> fields;
    // Each entry of `changes` as its "kind" and "key" (the JSON is flat objects of strings and
    // numbers, split here without a JSON library; keys and contacts in these tests hold no
    // braces or quotes).
    [[nodiscard]] std::vector<std::pair<std::string, std::string>> changes() const {
        std::vector<std::pair<std::string, std::string>> out;
        const std::string& j = fields.at("changes");
        std::size_t at = 0;
        while ((at = j.find('{', at)) != std::string::npos) {
            const std::size_t end = j.find('}', at);
            const std::string obj = j.substr(at, end - at);
            out.emplace_back(string_of(obj, "kind"), string_of(obj, "key"));
            at = end;
        }
        std::sort(out.begin(), out.end());
        return out;
    }
    [[nodiscard]] static std::string string_of(const std::string& obj, const std::string& name) {
        const std::string tag = "\"" + name + "\":\"";
        const std::size_t at = obj.find(tag);
        if (at == std::string::npos) return "?";
        const std::size_t from = at + tag.size();
        return obj.substr(from, obj.find('"', from) - from);
    }
    [[nodiscard]] static long long number_of(const std::string& obj, const std::string& name) {
        const std::string tag = "\"" + name + "\":";
        const std::size_t at = obj.find(tag);
        return at == std::string::npos ? -1 : std::stoll(obj.substr(at + tag.size()));
    }
};

// The events appended since `after` ("-": all), oldest first; `after` advances.
std::vector<Event> events_since(const test::RedisServer& server, std::string& after) {
    test::ReplyPtr r = server.command(
        {"XRANGE", std::string(location::kEventsKey), after == "-" ? "-" : "(" + after, "+"});
    REQUIRE(r);
    REQUIRE(r->type == REDIS_REPLY_ARRAY);
    std::vector<Event> out;
    for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        Event ev;
        ev.id.assign(e->element[0]->str, e->element[0]->len);
        for (std::size_t k = 0; k + 1 < e->element[1]->elements; k += 2)
            ev.fields[e->element[1]->element[k]->str] = e->element[1]->element[k + 1]->str;
        after = ev.id;
        out.push_back(std::move(ev));
    }
    return out;
}

// sipr:stats as {aors, bindings} (absent fields: 0).
std::pair<long long, long long> counts(const test::RedisServer& server) {
    test::ReplyPtr r =
        server.command({"HMGET", std::string(location::kStatsKey), "aors", "bindings"});
    REQUIRE(r);
    REQUIRE(r->elements == 2);
    const auto num = [](const redisReply* v) {
        return v->type == REDIS_REPLY_STRING ? std::stoll(v->str) : 0LL;
    };
    return {num(r->element[0]), num(r->element[1])};
}

}  // namespace

TEST_SUITE_BEGIN("location");

TEST_CASE("register.lua: a new binding is stored at Redis TIME and the key expires with it") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    const int64_t before = rig.redis_time_ms();
    Result r = rig.apply(changes("call-1", 5, {contact("sip:a@192.0.2.1", 600, "call-1", 5)}));
    CHECK(r.error == StoreError::None);
    CHECK(r.now_ms >= before);
    CHECK(r.now_ms < before + 5000);
    REQUIRE(r.bindings.size() == 1);
    const location::Binding& b = r.bindings[0];
    CHECK(b.contact == "sip:a@192.0.2.1");
    CHECK(b.expires_at_ms == r.now_ms + 600'000);
    CHECK(b.updated_at_ms == r.now_ms);
    CHECK(b.cseq == 5);
    CHECK(b.call_id == "call-1");
    RegisterTable h = rig.hash();
    REQUIRE(h.size() == 1);
    CHECK(h.count("sip:a@192.0.2.1") == 1);
    CHECK(rig.pttl() > 590'000);
    CHECK(rig.pttl() <= 600'000);

    Result seen = rig.lookup(kAor);
    CHECK(seen.error == StoreError::None);
    CHECK(seen.packed() == r.packed());
}

TEST_CASE("register.lua: a higher CSeq refreshes; the same Call-ID and CSeq leaves it as it is") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    Result first = rig.apply(changes("call-1", 5, {contact("sip:a@192.0.2.1", 600, "call-1", 5)}));
    REQUIRE(first.error == StoreError::None);
    rig.loop.run_for(3);  // a later Redis TIME

    // The same request again (a UDP retransmission, no flag): nothing is rewritten.
    Result again = rig.apply(changes("call-1", 5, {contact("sip:a@192.0.2.1", 900, "call-1", 5)}));
    CHECK(again.error == StoreError::None);
    CHECK(again.now_ms > first.now_ms);
    CHECK(again.packed() == first.packed());

    Result refresh =
        rig.apply(changes("call-1", 6, {contact("sip:a@192.0.2.1", 900, "call-1", 6)}));
    CHECK(refresh.error == StoreError::None);
    REQUIRE(refresh.bindings.size() == 1);
    CHECK(refresh.bindings[0].updated_at_ms == refresh.now_ms);
    CHECK(refresh.bindings[0].expires_at_ms == refresh.now_ms + 900'000);
    CHECK(refresh.bindings[0].cseq == 6);
}

TEST_CASE("register.lua: same Call-ID with a lower CSeq is STALE and writes nothing") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    REQUIRE(rig.apply(changes("call-1", 5, {contact("sip:a@192.0.2.1", 600, "call-1", 5)})).error ==
            StoreError::None);
    const RegisterTable before = rig.hash();

    Result old = rig.apply(changes("call-1", 4,
                                   {contact("sip:a@192.0.2.1", 1200, "call-1", 4),
                                    contact("sip:b@192.0.2.2", 1200, "call-1", 4)}));
    CHECK(old.error == StoreError::Stale);
    CHECK(old.bindings.empty());
    CHECK(rig.hash() == before);  // b not added either: checked before any write

    // Contact: * with a stale CSeq removes nothing.
    RegisterChanges star = changes("call-1", 4, {});
    star.remove_all = true;
    CHECK(rig.apply(star).error == StoreError::Stale);
    CHECK(rig.hash() == before);

    // Another Call-ID with a lower CSeq is another UA: the binding is replaced.
    Result other = rig.apply(changes("call-2", 1, {contact("sip:a@192.0.2.1", 1200, "call-2", 1)}));
    CHECK(other.error == StoreError::None);
    REQUIRE(other.bindings.size() == 1);
    CHECK(other.bindings[0].call_id == "call-2");
    CHECK(other.bindings[0].cseq == 1);
}

TEST_CASE("register.lua: expires 0 removes that binding; Contact: * removes all, key deleted") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    REQUIRE(rig.apply(changes("call-1", 1,
                              {contact("sip:a@192.0.2.1", 600, "call-1", 1),
                               contact("sip:b@192.0.2.2", 600, "call-1", 1),
                               contact("sip:c@192.0.2.3", 600, "call-1", 1)}))
                .bindings.size() == 3);
    Result rm = rig.apply(changes("call-1", 2, {contact("sip:a@192.0.2.1", 0, "call-1", 2)}));
    CHECK(rm.error == StoreError::None);
    CHECK(rm.bindings.size() == 2);
    CHECK(rm.find("sip:a@192.0.2.1") == nullptr);
    CHECK(rig.hash().size() == 2);
    // Removing what is not there is no error.
    CHECK(rig.apply(changes("call-1", 3, {contact("sip:zz@192.0.2.9", 0, "call-1", 3)}))
              .bindings.size() == 2);

    RegisterChanges star = changes("call-1", 4, {});
    star.remove_all = true;
    Result all = rig.apply(star);
    CHECK(all.error == StoreError::None);
    CHECK(all.bindings.empty());
    test::ReplyPtr exists = rig.server.command({"EXISTS", location::location_key(kAor)});
    REQUIRE(exists);
    CHECK(exists->integer == 0);
    CHECK(rig.lookup(kAor).bindings.empty());
}

TEST_CASE("register.lua: a contact bound and removed in one REGISTER is not stored") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    // Contacts apply in order: the later expires=0 wins, in the reply and in the hash alike.
    Result r = rig.apply(changes(
        "call-1", 1,
        {contact("sip:a@192.0.2.1", 600, "call-1", 1), contact("sip:b@192.0.2.2", 600, "call-1", 1),
         contact("sip:a@192.0.2.1", 0, "call-1", 1)}));
    CHECK(r.error == StoreError::None);
    CHECK(r.bindings.size() == 1);
    CHECK(r.find("sip:a@192.0.2.1") == nullptr);
    RegisterTable h = rig.hash();
    CHECK(h.size() == 1);
    CHECK(h.count("sip:a@192.0.2.1") == 0);
    CHECK(rig.lookup(kAor).find("sip:a@192.0.2.1") == nullptr);
}

TEST_CASE("register.lua: --max-contacts reject is TOOMANY and writes nothing; refreshing is fine") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    REQUIRE(rig.apply(changes("call-1", 1,
                              {contact("sip:a@192.0.2.1", 600, "call-1", 1),
                               contact("sip:b@192.0.2.2", 600, "call-1", 1)},
                              2))
                .error == StoreError::None);
    const RegisterTable before = rig.hash();
    CHECK(
        rig.apply(changes("call-3", 1, {contact("sip:c@192.0.2.3", 600, "call-3", 1)}, 2)).error ==
        StoreError::TooManyContacts);
    CHECK(rig.hash() == before);
    // Refreshing one (not adding) is within the limit; so is replacing one by another.
    CHECK(
        rig.apply(changes("call-1", 2, {contact("sip:a@192.0.2.1", 600, "call-1", 2)}, 2)).error ==
        StoreError::None);
    Result swap = rig.apply(changes(
        "call-1", 3,
        {contact("sip:a@192.0.2.1", 0, "call-1", 3), contact("sip:c@192.0.2.3", 600, "call-1", 3)},
        2));
    CHECK(swap.error == StoreError::None);
    CHECK(swap.bindings.size() == 2);
    CHECK(swap.find("sip:c@192.0.2.3") != nullptr);
    // Three at once on an empty AOR are refused too.
    RegisterChanges star = changes("call-1", 4, {});
    star.remove_all = true;
    REQUIRE(rig.apply(star).error == StoreError::None);
    CHECK(rig.apply(changes("call-9", 1,
                            {contact("sip:a@192.0.2.1", 600, "call-9", 1),
                             contact("sip:b@192.0.2.2", 600, "call-9", 1),
                             contact("sip:c@192.0.2.3", 600, "call-9", 1)},
                            2))
              .error == StoreError::TooManyContacts);
    CHECK(rig.hash().empty());
}

TEST_CASE("register.lua: --max-contacts evict drops the oldest, untouched before touched") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    REQUIRE(rig.apply(changes("call-a", 1, {contact("sip:a@192.0.2.1", 600, "call-a", 1)}, 2, true))
                .error == StoreError::None);
    rig.loop.run_for(3);
    REQUIRE(rig.apply(changes("call-b", 1, {contact("sip:b@192.0.2.2", 600, "call-b", 1)}, 2, true))
                .error == StoreError::None);
    rig.loop.run_for(3);
    Result c =
        rig.apply(changes("call-c", 1, {contact("sip:c@192.0.2.3", 600, "call-c", 1)}, 2, true));
    CHECK(c.error == StoreError::None);
    CHECK(c.bindings.size() == 2);
    CHECK(c.find("sip:a@192.0.2.1") == nullptr);  // the oldest
    CHECK(c.find("sip:b@192.0.2.2") != nullptr);
    CHECK(c.find("sip:c@192.0.2.3") != nullptr);
    CHECK(rig.hash().count("sip:a@192.0.2.1") == 0);

    // b is older than c, but refreshed by this request: c goes.
    rig.loop.run_for(3);
    Result d = rig.apply(changes("call-b", 2,
                                 {contact("sip:b@192.0.2.2", 600, "call-b", 2),
                                  contact("sip:d@192.0.2.4", 600, "call-b", 2)},
                                 2, true));
    CHECK(d.error == StoreError::None);
    CHECK(d.bindings.size() == 2);
    CHECK(d.find("sip:c@192.0.2.3") == nullptr);
    CHECK(d.find("sip:b@192.0.2.2") != nullptr);
    CHECK(d.find("sip:d@192.0.2.4") != nullptr);

    // More new ones than the limit: all touched at one time, so the smallest fields go first.
    RegisterChanges star = changes("call-b", 3, {});
    star.remove_all = true;
    REQUIRE(rig.apply(star).error == StoreError::None);
    Result many = rig.apply(changes("call-m", 1,
                                    {contact("sip:m3@192.0.2.3", 600, "call-m", 1),
                                     contact("sip:m1@192.0.2.1", 600, "call-m", 1),
                                     contact("sip:m2@192.0.2.2", 600, "call-m", 1)},
                                    2, true));
    CHECK(many.error == StoreError::None);
    CHECK(many.bindings.size() == 2);
    CHECK(many.find("sip:m1@192.0.2.1") == nullptr);
}

TEST_CASE("register.lua: the retransmission flag writes nothing and is STALE once undone") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    RegisterChanges first = changes("call-1", 7, {contact("sip:a@192.0.2.1", 600, "call-1", 7)});
    Result applied = rig.apply(first);
    REQUIRE(applied.error == StoreError::None);
    rig.loop.run_for(3);

    RegisterChanges copy = first;
    copy.retransmission = true;
    copy.contacts[0].expires_s = 3600;  // whatever it asks, nothing is written
    Result again = rig.apply(copy);
    CHECK(again.error == StoreError::None);
    CHECK(again.now_ms > applied.now_ms);
    CHECK(again.packed() == applied.packed());
    CHECK(values(rig.hash()) == applied.packed());

    // Refreshed since by a newer CSeq: the captured copy must not answer 200 again.
    REQUIRE(rig.apply(changes("call-1", 8, {contact("sip:a@192.0.2.1", 600, "call-1", 8)})).error ==
            StoreError::None);
    const RegisterTable refreshed = rig.hash();
    CHECK(rig.apply(copy).error == StoreError::Stale);
    // Removed since: nor can it bring the binding back.
    REQUIRE(rig.apply(changes("call-1", 9, {contact("sip:a@192.0.2.1", 0, "call-1", 9)})).error ==
            StoreError::None);
    RegisterChanges removed_copy =
        changes("call-1", 8, {contact("sip:a@192.0.2.1", 600, "call-1", 8)});
    removed_copy.retransmission = true;
    CHECK(rig.apply(removed_copy).error == StoreError::Stale);
    CHECK(rig.hash().empty());

    // A retransmitted removal: fine while the binding stays gone, STALE if it is bound again
    // with this Call-ID.
    RegisterChanges rm_copy = changes("call-1", 9, {contact("sip:a@192.0.2.1", 0, "call-1", 9)});
    rm_copy.retransmission = true;
    CHECK(rig.apply(rm_copy).error == StoreError::None);
    REQUIRE(
        rig.apply(changes("call-1", 10, {contact("sip:a@192.0.2.1", 600, "call-1", 10)})).error ==
        StoreError::None);
    CHECK(rig.apply(rm_copy).error == StoreError::Stale);
    (void)refreshed;
}

TEST_CASE("register.lua: expired bindings are pruned; entries of another version left alone") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    const int64_t now = rig.redis_time_ms();
    rig.hset("sip:old@192.0.2.8", packed("sip:old@192.0.2.8", "call-x", 1, now - 1000, now - 9000));
    rig.hset("sip:live@192.0.2.7", packed("sip:live@192.0.2.7", "call-x", 1, now + 60'000, now));
    const std::string future =
        "2\x1f"
        "whatever a newer registrar writes";
    rig.hset("sip:v2@192.0.2.6", future);

    // The look-up never returns the expired binding and counts the unreadable one.
    Result seen = rig.lookup(kAor);
    CHECK(seen.bindings.size() == 1);
    CHECK(rig.store->stats().garbage_bindings == 1);

    Result r = rig.apply(changes("call-1", 1, {contact("sip:a@192.0.2.1", 600, "call-1", 1)}));
    CHECK(r.error == StoreError::None);
    CHECK(r.bindings.size() == 2);
    CHECK(r.find("sip:old@192.0.2.8") == nullptr);
    RegisterTable h = rig.hash();
    CHECK(h.count("sip:old@192.0.2.8") == 0);
    CHECK(h.count("sip:live@192.0.2.7") == 1);
    CHECK(h["sip:v2@192.0.2.6"] == future);
}

// ---------------------------------------------------------------------------------------------
// The model (register_model.h) against the script

namespace {

std::string printable(std::string s) {
    std::replace(s.begin(), s.end(), location::kFieldSep, '|');
    return s;
}
std::string describe(const RegisterTable& t) {
    std::string out;
    for (const auto& [f, v] : t) out += "\n  " + f + " = " + printable(v);
    return out;
}
std::string describe(const RegisterChanges& ch) {
    std::string out = ch.call_id + " " + std::to_string(ch.cseq) + " max " +
                      std::to_string(ch.max_contacts) + (ch.evict_oldest ? " evict" : "") +
                      (ch.remove_all ? " *" : "") + (ch.retransmission ? " retrans" : "");
    for (const location::ContactChange& c : ch.contacts)
        out += "\n  " + c.key + " " + std::to_string(c.expires_s);
    return out;
}

// Runs `ch` through the script and the model (at the script's TIME) and requires the same
// outcome. `model` is the model's hash, kept in step with Redis's.
void same_outcome(ScriptRig& rig, RegisterTable& model, const RegisterChanges& ch) {
    Result real = rig.apply(ch);
    const int64_t now = real.error == StoreError::None ? real.now_ms : rig.redis_time_ms();
    RegisterTable reply;
    StoreError err = test::apply_register_model(model, ch, now, reply);
    const RegisterTable real_hash = rig.hash();
    CHECK(err == real.error);
    CHECK(values(reply) == real.packed());
    CHECK(model == real_hash);
    if (model != real_hash || err != real.error) {
        MESSAGE("changes: " << describe(ch) << "\nmodel: " << describe(model)
                            << "\nredis: " << describe(real_hash));
        model = real_hash;  // report each divergence once
    }
}

}  // namespace

TEST_CASE("register.lua events: one per change, of each kind, with its fields and the counts") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    std::string last = "-";
    using Changes = std::vector<std::pair<std::string, std::string>>;

    // Added.
    Result r = rig.apply(changes("c1", 1, {contact("sip:a@192.0.2.1", 600, "c1", 1)}));
    REQUIRE(r.error == StoreError::None);
    std::vector<Event> ev = events_since(rig.server, last);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].fields.at("v") == "1");
    CHECK(ev[0].fields.at("aor") == kAor);
    CHECK(ev[0].fields.at("at") == std::to_string(r.now_ms));
    CHECK(ev[0].fields.at("src") == "registrar");
    CHECK(ev[0].fields.at("all") == "0");
    CHECK(ev[0].fields.at("bindings") == "1");
    CHECK(ev[0].changes() == Changes{{"added", "sip:a@192.0.2.1"}});
    const std::string& j = ev[0].fields.at("changes");
    CHECK(Event::string_of(j, "contact") == "sip:a@192.0.2.1");
    CHECK(Event::number_of(j, "expires") == r.now_ms + 600'000);
    CHECK(counts(rig.server) == std::pair{1LL, 1LL});

    // Refreshed; the same request again changes nothing and publishes nothing.
    rig.loop.run_for(2);
    r = rig.apply(changes("c1", 2, {contact("sip:a@192.0.2.1", 900, "c1", 2)}));
    REQUIRE(r.error == StoreError::None);
    (void)rig.apply(changes("c1", 2, {contact("sip:a@192.0.2.1", 900, "c1", 2)}));
    ev = events_since(rig.server, last);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].changes() == Changes{{"refreshed", "sip:a@192.0.2.1"}});
    CHECK(Event::number_of(ev[0].fields.at("changes"), "expires") == r.now_ms + 900'000);
    CHECK(counts(rig.server) == std::pair{1LL, 1LL});

    // Two added in one REGISTER: one event listing both.
    r = rig.apply(changes(
        "c2", 1,
        {contact("sip:b@192.0.2.2", 600, "c2", 1), contact("sip:c@192.0.2.3", 600, "c2", 1)}));
    ev = events_since(rig.server, last);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].changes() == Changes{{"added", "sip:b@192.0.2.2"}, {"added", "sip:c@192.0.2.3"}});
    CHECK(ev[0].fields.at("bindings") == "3");
    CHECK(counts(rig.server) == std::pair{1LL, 3LL});

    // Removed (expires 0).
    r = rig.apply(changes("c2", 2, {contact("sip:b@192.0.2.2", 0, "c2", 2)}));
    ev = events_since(rig.server, last);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].changes() == Changes{{"removed", "sip:b@192.0.2.2"}});
    CHECK(Event::string_of(ev[0].fields.at("changes"), "contact") == "sip:b@192.0.2.2");
    CHECK(ev[0].fields.at("bindings") == "2");
    CHECK(counts(rig.server) == std::pair{1LL, 2LL});

    // STALE and TOOMANY write nothing and publish nothing.
    CHECK(rig.apply(changes("c1", 1, {contact("sip:a@192.0.2.1", 600, "c1", 1)})).error ==
          StoreError::Stale);
    CHECK(rig.apply(changes("c3", 1, {contact("sip:d@192.0.2.4", 600, "c3", 1)}, 2)).error ==
          StoreError::TooManyContacts);
    CHECK(events_since(rig.server, last).empty());
    CHECK(counts(rig.server) == std::pair{1LL, 2LL});

    // Evicted: the oldest (a) goes for d, in one event.
    r = rig.apply(changes("c3", 1, {contact("sip:d@192.0.2.4", 600, "c3", 1)}, 2, true));
    REQUIRE(r.error == StoreError::None);
    ev = events_since(rig.server, last);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].changes() == Changes{{"added", "sip:d@192.0.2.4"}, {"evicted", "sip:a@192.0.2.1"}});
    CHECK(ev[0].fields.at("bindings") == "2");
    CHECK(counts(rig.server) == std::pair{1LL, 2LL});

    // Contact: * removes all: all=1, bindings 0, the AOR leaves the counts and the expiry index.
    RegisterChanges star = changes("c4", 1, {});
    star.remove_all = true;
    r = rig.apply(star);
    REQUIRE(r.error == StoreError::None);
    ev = events_since(rig.server, last);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].fields.at("all") == "1");
    CHECK(ev[0].fields.at("bindings") == "0");
    CHECK(ev[0].changes() ==
          Changes{{"removed", "sip:c@192.0.2.3"}, {"removed", "sip:d@192.0.2.4"}});
    CHECK(counts(rig.server) == std::pair{0LL, 0LL});
    test::ReplyPtr z = rig.server.command({"ZCARD", std::string(location::kExpiryKey)});
    CHECK(z->integer == 0);

    // By the operator: src=locctl, no Call-ID/CSeq ordering.
    RegisterChanges op = changes("sip-locctl", 1, {contact("sip:e@192.0.2.5", 600, "x", 1)});
    op.by_operator = true;
    REQUIRE(rig.apply(op).error == StoreError::None);
    op.contacts[0].expires_s = 0;
    op.cseq = 0;  // lower: would be STALE for a REGISTER
    REQUIRE(rig.apply(op).error == StoreError::None);
    ev = events_since(rig.server, last);
    REQUIRE(ev.size() == 2);
    CHECK(ev[0].fields.at("src") == "locctl");
    CHECK(ev[1].changes() == Changes{{"removed", "sip:e@192.0.2.5"}});
    CHECK(counts(rig.server) == std::pair{0LL, 0LL});
}

TEST_CASE("register.lua events: expiry becomes an event on the next write or the sweep") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    std::string last = "-";
    using Changes = std::vector<std::pair<std::string, std::string>>;
    RegisterChanges sweep;
    sweep.aor = kAor;
    sweep.sweep = true;

    // a lives long, b expires in 1 s.
    REQUIRE(rig.apply(changes("c1", 1, {contact("sip:a@192.0.2.1", 600, "c1", 1)})).error ==
            StoreError::None);
    Result r = rig.apply(changes("c2", 1, {contact("sip:b@192.0.2.2", 1, "c2", 1)}));
    REQUIRE(r.error == StoreError::None);
    (void)events_since(rig.server, last);
    // The expiry index holds the earliest expiry (b's) and the stored count.
    test::ReplyPtr z =
        rig.server.command({"ZSCORE", std::string(location::kExpiryKey), std::string(kAor)});
    REQUIRE(z);
    REQUIRE(z->type == REDIS_REPLY_STRING);
    CHECK(std::stoll(z->str) == (r.now_ms + 1000) * 1024 + 2);

    // Before b's expiry the sweep changes nothing.
    CHECK(rig.apply(sweep).error == StoreError::None);
    CHECK(events_since(rig.server, last).empty());
    rig.loop.run_for(1100);
    CHECK(rig.apply(sweep).error == StoreError::None);
    std::vector<Event> ev = events_since(rig.server, last);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].fields.at("src") == "sweep");
    CHECK(ev[0].changes() == Changes{{"expired", "sip:b@192.0.2.2"}});
    CHECK(ev[0].fields.at("bindings") == "1");
    CHECK(counts(rig.server) == std::pair{1LL, 1LL});

    // The whole key gone in Redis before anyone saw it (its latest binding expired; DEL stands
    // for that here): the sweep reports its bindings as one entry without a key.
    test::ReplyPtr del = rig.server.command({"DEL", location::location_key(kAor)});
    REQUIRE(del->integer == 1);
    CHECK(rig.apply(sweep).error == StoreError::None);
    ev = events_since(rig.server, last);
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].changes() == Changes{{"expired", ""}});
    CHECK(Event::number_of(ev[0].fields.at("changes"), "count") == 1);
    CHECK(ev[0].fields.at("bindings") == "0");
    CHECK(counts(rig.server) == std::pair{0LL, 0LL});
    z = rig.server.command({"ZCARD", std::string(location::kExpiryKey)});
    CHECK(z->integer == 0);
    // Nothing left to report.
    CHECK(rig.apply(sweep).error == StoreError::None);
    CHECK(events_since(rig.server, last).empty());
}

TEST_CASE(
    "register.lua events: bindings stored before the counts are counted at their first change") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    const int64_t now = rig.redis_time_ms();
    // Two bindings written before the counts existed: no index entry, not counted.
    rig.hset("sip:old1@192.0.2.1", packed("sip:old1@192.0.2.1", "x", 1, now + 600'000, now));
    rig.hset("sip:old2@192.0.2.2", packed("sip:old2@192.0.2.2", "x", 1, now + 600'000, now));
    CHECK(counts(rig.server) == std::pair{0LL, 0LL});
    REQUIRE(rig.apply(changes("c1", 1, {contact("sip:a@192.0.2.3", 600, "c1", 1)})).error ==
            StoreError::None);
    CHECK(counts(rig.server) == std::pair{1LL, 3LL});
    RegisterChanges star = changes("c1", 2, {});
    star.remove_all = true;
    REQUIRE(rig.apply(star).error == StoreError::None);
    CHECK(counts(rig.server) == std::pair{0LL, 0LL});
}

TEST_CASE("register.lua events: when the event cannot be written the bindings do not change") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    REQUIRE(rig.apply(changes("c1", 1, {contact("sip:a@192.0.2.1", 600, "c1", 1)})).error ==
            StoreError::None);
    const RegisterTable before = rig.hash();
    // sipr:events made a string: XADD fails inside the script.
    test::ReplyPtr d = rig.server.command({"DEL", std::string(location::kEventsKey)});
    test::ReplyPtr s = rig.server.command({"SET", std::string(location::kEventsKey), "x"});
    CHECK(rig.apply(changes("c1", 2, {contact("sip:b@192.0.2.2", 600, "c1", 2)})).error ==
          StoreError::Protocol);
    CHECK(rig.hash() == before);
}

TEST_CASE("register.lua events: on a Cluster (Channel) the event is PUBLISHed, no counts kept") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    rig.store->set_event_delivery(location::EventDelivery::Channel);
    // A subscriber on a blocking connection of its own.
    redisContext* sub = redisConnect("127.0.0.1", rig.server.url().port);
    REQUIRE(sub != nullptr);
    REQUIRE(sub->err == 0);
    freeReplyObject(
        redisCommand(sub, "SUBSCRIBE %s", std::string(location::kEventsChannel).c_str()));
    Result r = rig.apply(changes("c1", 1, {contact("sip:a@192.0.2.1", 600, "c1", 1)}));
    REQUIRE(r.error == StoreError::None);
    void* msg = nullptr;
    REQUIRE(redisGetReply(sub, &msg) == REDIS_OK);
    auto* m = static_cast<redisReply*>(msg);
    REQUIRE(m->elements == 3);
    const std::string payload(m->element[2]->str, m->element[2]->len);
    freeReplyObject(m);
    redisFree(sub);
    CHECK(Event::string_of(payload, "v") == "1");
    CHECK(Event::string_of(payload, "aor") == kAor);
    CHECK(Event::string_of(payload, "kind") == "added");
    CHECK(Event::string_of(payload, "key") == "sip:a@192.0.2.1");
    test::ReplyPtr n =
        rig.server.command({"EXISTS", std::string(location::kEventsKey),
                            std::string(location::kStatsKey), std::string(location::kExpiryKey)});
    CHECK(n->integer == 0);
}

TEST_CASE("register.lua events: Off (sip-registrard --events off) publishes and counts nothing") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    rig.store->set_event_delivery(location::EventDelivery::Off);
    redisContext* sub = redisConnect("127.0.0.1", rig.server.url().port);
    REQUIRE(sub != nullptr);
    REQUIRE(sub->err == 0);
    freeReplyObject(
        redisCommand(sub, "SUBSCRIBE %s", std::string(location::kEventsChannel).c_str()));
    Result r = rig.apply(changes("c1", 1, {contact("sip:a@192.0.2.1", 600, "c1", 1)}));
    REQUIRE(r.error == StoreError::None);
    CHECK(rig.hash().size() == 1);
    // A PUBLISH would be read here; the PING's reply comes first only when there was none.
    REQUIRE(redisAppendCommand(sub, "PING") == REDIS_OK);
    timeval tv{2, 0};
    redisSetTimeout(sub, tv);
    void* msg = nullptr;
    REQUIRE(redisGetReply(sub, &msg) == REDIS_OK);
    auto* m = static_cast<redisReply*>(msg);
    REQUIRE(m->type == REDIS_REPLY_ARRAY);
    CHECK(std::string(m->element[0]->str) == "pong");
    freeReplyObject(m);
    redisFree(sub);
    test::ReplyPtr n =
        rig.server.command({"EXISTS", std::string(location::kEventsKey),
                            std::string(location::kStatsKey), std::string(location::kExpiryKey)});
    CHECK(n->integer == 0);
}

TEST_CASE("register model: the same outcome as register.lua, case by case") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    RegisterTable model;
    const int64_t now = rig.redis_time_ms();
    // Seeds in both: an expired binding, a live one, one of another version.
    const std::pair<std::string, std::string> seeds[] = {
        {"sip:old@192.0.2.8", packed("sip:old@192.0.2.8", "call-x", 1, now - 1000, now - 9000)},
        {"sip:live@192.0.2.7", packed("sip:live@192.0.2.7", "call-x", 3, now + 60'000, now - 5)},
        {"sip:v2@192.0.2.6", "2\x1fnewer"},
    };
    for (const auto& [field, value] : seeds) {
        rig.hset(field, value);
        model[field] = value;
    }
    auto remove_all = [](const std::string& call_id, uint32_t cseq) {
        RegisterChanges ch = changes(call_id, cseq, {}, 3);
        ch.remove_all = true;
        return ch;
    };
    auto retrans = [](RegisterChanges ch) {
        ch.retransmission = true;
        return ch;
    };
    const std::vector<RegisterChanges> steps = {
        changes("call-1", 1, {contact("sip:a@192.0.2.1", 600, "call-1", 1)}, 3),
        changes("call-1", 1, {contact("sip:a@192.0.2.1", 600, "call-1", 1)}, 3),  // again
        retrans(changes("call-1", 1, {contact("sip:a@192.0.2.1", 600, "call-1", 1)}, 3)),
        changes("call-x", 2, {contact("sip:live@192.0.2.7", 600, "call-x", 2)}, 3),  // stale
        changes("call-2", 1,
                {contact("sip:b@192.0.2.2", 600, "call-2", 1),
                 contact("sip:c@192.0.2.3", 600, "call-2", 1)},
                3),  // 4 > 3: TOOMANY
        changes("call-2", 1,
                {contact("sip:b@192.0.2.2", 600, "call-2", 1),
                 contact("sip:c@192.0.2.3", 600, "call-2", 1)},
                3, true),  // evicts the oldest untouched (live)
        changes("call-1", 2, {contact("sip:a@192.0.2.1", 0, "call-1", 2)}, 3),
        retrans(changes("call-1", 1, {contact("sip:a@192.0.2.1", 600, "call-1", 1)}, 3)),
        retrans(changes("call-1", 2, {contact("sip:a@192.0.2.1", 0, "call-1", 2)}, 3)),
        changes("call-3", 5,
                {contact("sip:d@192.0.2.4", 60, "call-3", 5),
                 contact("sip:e@192.0.2.5", 60, "call-3", 5),
                 contact("sip:f@192.0.2.6", 60, "call-3", 5)},
                2, true),
        remove_all("call-3", 4),  // stale
        retrans(remove_all("call-3", 5)),
        remove_all("call-3", 6),
        retrans(remove_all("call-3", 6)),
        changes("call-4", 1, {}, 3),  // a fetch
    };
    for (std::size_t i = 0; i < steps.size(); ++i) {
        CAPTURE(i);
        same_outcome(rig, model, steps[i]);
        rig.loop.run_for(2);  // successive Redis TIMEs, so eviction order is by age
    }
}

TEST_CASE("register model: the same outcome as register.lua on 300 random REGISTERs") {
    ScriptRig rig;
    SIPR_REQUIRE_REDIS_SERVER(rig.server);
    rig.connect();
    RegisterTable model;
    std::mt19937 rng(20261208);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    const char* keys[] = {"sip:a@192.0.2.1", "sip:b@192.0.2.2", "sip:c@192.0.2.3",
                          "sip:d@192.0.2.4", "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"};
    const char* call_ids[] = {"call-1", "call-2", "call-3"};
    uint32_t cseqs[3] = {10, 10, 10};
    for (int i = 0; i < 300; ++i) {
        CAPTURE(i);
        const int who = pick(3);
        // Mostly forward, sometimes the same CSeq again, sometimes an older one.
        const int step = pick(10);
        uint32_t cseq = step < 6 ? ++cseqs[who] : step < 8 ? cseqs[who] : cseqs[who] - 1;
        RegisterChanges ch =
            changes(call_ids[who], cseq, {}, static_cast<uint32_t>(1 + pick(3)), pick(2) == 0);
        if (pick(12) == 0) {
            ch.remove_all = true;
        } else {
            const int n = pick(4);
            for (int k = 0; k < n; ++k) {
                const uint32_t exp = pick(5) == 0 ? 0 : 60 + static_cast<uint32_t>(pick(600));
                ch.contacts.push_back(contact(keys[pick(5)], exp, ch.call_id, cseq));
            }
        }
        ch.retransmission = pick(6) == 0;
        same_outcome(rig, model, ch);
        if (pick(4) == 0) rig.loop.run_for(1);
    }
}

TEST_SUITE_END();
