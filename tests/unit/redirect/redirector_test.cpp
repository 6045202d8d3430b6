// The redirect service of DESIGN §4: Redirector (slots, store, sender, stats) against a fake
// LookupStore, a fake Sender and fake clocks. No sockets, no Redis.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/redirect/redirect.h"
#include "support/redirect_rig.h"

using namespace sipr;
using namespace sipr::test::redirect_rig;

// =============================================================================================
// Redirector

TEST_CASE("Redirector: INVITE -> look-up of the normalised AOR -> 302 to the source") {
    Rig rig;
    rig.store.bindings = {binding("sip:bob@192.0.2.1", 500), binding("sip:bob@192.0.2.2", 1000)};
    rig.feed(make("INVITE", "sip:bob@EXAMPLE.com:5060;transport=udp"));
    REQUIRE(rig.store.pending.size() == 1);
    CHECK(rig.store.pending[0].aor == "sip:bob@example.com");
    CHECK(rig.sender.sent.empty());
    CHECK(rig.r->inflight() == 1);
    CHECK(rig.stats.inflight_lookups.get() == 1);

    g_now_us += 1'500;
    rig.store.answer();
    REQUIRE(rig.sender.sent.size() == 1);
    CHECK(rig.sender.sent[0].ip == "192.0.2.10");
    CHECK(rig.sender.sent[0].port == 5060);  // no rport, no port in Via (RFC 3261 §18.2.2)
    auto p = rig.sender.last();
    REQUIRE(p->status == sip::ParseStatus::Ok);
    CHECK(p->code() == 302);
    CHECK(p->contact_uris() == std::vector<std::string>{"sip:bob@192.0.2.2", "sip:bob@192.0.2.1"});
    CHECK(rig.r->inflight() == 0);
    CHECK(rig.stats.inflight_lookups.get() == 0);
    CHECK(rig.responses(302) == 1);
    CHECK(rig.requests(sip::Method::Invite) == 1);
    CHECK(rig.stats.lookup_duration.sum_us() == 1'500);
}

TEST_CASE("Redirector: the response goes to the rport / sent-by port") {
    Rig rig;
    Req r;
    r.via = "SIP/2.0/UDP 192.0.2.99:5080;rport;branch=z9hG4bKrp";
    rig.feed(r);
    rig.store.answer();
    REQUIRE(rig.sender.sent.size() == 1);
    CHECK(rig.sender.sent[0].port == 5062);
    CHECK(contains(rig.sender.sent[0].bytes, ";rport=5062;"));

    r.via = "SIP/2.0/UDP 192.0.2.99:5080;branch=z9hG4bKnp";
    rig.feed(r);
    rig.store.answer();
    REQUIRE(rig.sender.sent.size() == 2);
    CHECK(rig.sender.sent[1].port == 5080);
}

TEST_CASE("Redirector: the datagram is copied - its buffer may be reused before the answer") {
    Rig rig;
    rig.store.bindings = {binding("sip:bob@192.0.2.1")};
    Req a;
    a.call_id = "first-call@pc33";
    Req b = make("INVITE", "sip:carol@example.com");
    b.call_id = "other-call@pc33";
    b.to = "<sip:carol@example.com>";
    std::string buf = a.text();
    rig.r->on_datagram(buf, rig.peer);
    std::fill(buf.begin(), buf.end(), 'Z');
    buf = b.text();
    rig.r->on_datagram(buf, rig.peer);
    std::fill(buf.begin(), buf.end(), '\0');
    REQUIRE(rig.store.pending.size() == 2);
    CHECK(rig.store.pending[0].aor == "sip:bob@example.com");
    CHECK(rig.store.pending[1].aor == "sip:carol@example.com");
    rig.store.answer();
    rig.store.answer();
    REQUIRE(rig.sender.sent.size() == 2);
    auto first = parse_response(rig.sender.sent[0].bytes);
    auto second = parse_response(rig.sender.sent[1].bytes);
    CHECK(first->header("Call-ID") == "first-call@pc33");
    CHECK(second->header("Call-ID") == "other-call@pc33");
    CHECK(contains(second->header("To"), "<sip:carol@example.com>;tag="));
    CHECK(first->code() == 302);
    CHECK(second->code() == 302);
}

TEST_CASE("Redirector: slots are reused and answers stay right") {
    Rig rig;
    rig.store.bindings = {binding("sip:bob@192.0.2.1")};
    for (int i = 0; i < 5; ++i) {
        Req r;
        r.call_id = "call-" + std::to_string(i);
        rig.feed(r);
        rig.store.answer();
        REQUIRE(rig.sender.sent.size() == static_cast<std::size_t>(i + 1));
        CHECK(rig.sender.last()->header("Call-ID") == r.call_id);
    }
    CHECK(rig.responses(302) == 5);
}

TEST_CASE("Redirector: a look-up answered inside lookup() (near-cache hit) is answered once") {
    Config c = base_config();
    c.max_inflight = 1;  // the slot must be free again after each
    Rig rig(c);
    rig.store.at_once = true;
    rig.store.from_cache = true;
    rig.store.bindings = {binding("sip:bob@192.0.2.1", 1000)};
    for (int i = 0; i < 5; ++i) {
        Req r;
        r.call_id = "hit-" + std::to_string(i);
        rig.feed(r);
        REQUIRE(rig.sender.sent.size() == static_cast<std::size_t>(i + 1));
        auto p = rig.sender.last();
        CHECK(p->code() == 302);
        CHECK(p->header("Call-ID") == r.call_id);
        CHECK(rig.r->inflight() == 0);
        CHECK(rig.stats.inflight_lookups.get() == 0);
    }
    CHECK(rig.responses(302) == 5);
    CHECK(rig.responses(503) == 0);
    // sipr_lookup_duration_seconds measures Redis: answers from the cache are not in it.
    uint64_t observed = 0;
    for (std::size_t i = 0; i <= base::DurationHistogram::kBoundsUs.size(); ++i)
        observed += rig.stats.lookup_duration.bucket(i);
    CHECK(observed == 0);
}

TEST_CASE("Redirector: --max-inflight reached -> 503 at once, no look-up") {
    Config c = base_config();
    c.max_inflight = 2;
    Rig rig(c);
    for (int i = 0; i < 3; ++i) {
        Req r;
        r.call_id = "busy-" + std::to_string(i);
        rig.feed(r);
    }
    CHECK(rig.store.asked.size() == 2);
    REQUIRE(rig.sender.sent.size() == 1);
    auto p = rig.sender.last();
    CHECK(p->code() == 503);
    CHECK(p->header("Call-ID") == "busy-2");
    CHECK(!p->header("Retry-After").empty());
    CHECK(rig.r->inflight() == 2);
    CHECK(rig.redis_errors(base::RedisErrorKind::Overloaded) == 1);

    // Requests that need no look-up are still answered while busy.
    rig.feed(make("CANCEL", "sip:bob@example.com"));
    REQUIRE(rig.sender.sent.size() == 2);
    CHECK(rig.sender.last()->code() == 200);

    // A freed slot takes the next look-up.
    rig.store.answer();
    CHECK(rig.r->inflight() == 1);
    rig.feed(Req{});
    CHECK(rig.store.asked.size() == 3);
    CHECK(rig.r->inflight() == 2);
    rig.store.answer();
    rig.store.answer();
    CHECK(rig.r->inflight() == 0);
    CHECK(rig.stats.inflight_lookups.get() == 0);
    CHECK(rig.responses(503) == 1);
    CHECK(rig.responses(404) == 3);
}

TEST_CASE("Redirector: a store refusing the look-up -> 503, never 404") {
    for (StoreError e : {StoreError::Unavailable, StoreError::Overloaded}) {
        CAPTURE(static_cast<int>(e));
        Rig rig;
        rig.store.refuse = e;
        rig.feed(Req{});
        REQUIRE(rig.sender.sent.size() == 1);
        auto p = rig.sender.last();
        CHECK(p->code() == 503);
        CHECK(!p->header("Retry-After").empty());
        CHECK(rig.r->inflight() == 0);
        CHECK(rig.stats.inflight_lookups.get() == 0);
        CHECK(rig.store.pending.empty());
        auto kind = e == StoreError::Overloaded ? base::RedisErrorKind::Overloaded
                                                : base::RedisErrorKind::Unavailable;
        CHECK(rig.redis_errors(kind) == 1);
        // The slot came back: the next request is looked up.
        rig.store.refuse = StoreError::None;
        rig.feed(Req{});
        CHECK(rig.store.pending.size() == 1);
    }
}

TEST_CASE("Redirector: a look-up that times out -> 503, never 404") {
    Rig rig;
    rig.feed(Req{});
    rig.store.answer(StoreError::Timeout);
    REQUIRE(rig.sender.sent.size() == 1);
    auto p = rig.sender.last();
    CHECK(p->code() == 503);
    CHECK(!p->header("Retry-After").empty());
    CHECK(rig.responses(404) == 0);
    CHECK(rig.responses(503) == 1);
    CHECK(rig.redis_errors(base::RedisErrorKind::Timeout) == 1);
    CHECK(rig.r->inflight() == 0);

    rig.feed(Req{});
    rig.store.answer(StoreError::Unavailable);  // disconnected while waiting
    CHECK(rig.sender.last()->code() == 503);
    CHECK(rig.redis_errors(base::RedisErrorKind::Unavailable) == 1);
}

TEST_CASE("Redirector: expiry is judged by the wall clock at the answer") {
    Rig rig;
    rig.store.bindings = {binding("sip:short@192.0.2.1", 1000, 2'000),
                          binding("sip:long@192.0.2.2", 500, 60'000)};
    rig.feed(Req{});
    g_wall_ms = kNow + 2'500;  // the first binding expired while the look-up was out
    rig.store.answer();
    auto p = rig.sender.last();
    CHECK(p->contact_uris() == std::vector<std::string>{"sip:long@192.0.2.2"});
    REQUIRE(p->contacts.size() == 1);
    CHECK(p->contacts[0].expires == 58);  // 57.5 s rounded up
}

TEST_CASE("Redirector: OPTIONS to the server -> 200 / 503 / 200 with health_ignores_redis") {
    Rig rig;
    rig.feed(make("OPTIONS", "sip:example.com"));
    REQUIRE(rig.sender.sent.size() == 1);
    auto p = rig.sender.last();
    CHECK(p->code() == 200);
    CHECK(contains(p->header("Allow"), "INVITE"));
    CHECK(rig.store.asked.empty());

    rig.store.up = false;
    rig.feed(make("OPTIONS", "sip:example.com"));
    p = rig.sender.last();
    CHECK(p->code() == 503);
    CHECK(!p->header("Retry-After").empty());

    Config c = base_config();
    c.health_ignores_redis = true;
    Rig ignoring(c);
    ignoring.store.up = false;
    ignoring.feed(make("OPTIONS", "sip:example.com"));
    CHECK(ignoring.sender.last()->code() == 200);
    CHECK(rig.requests(sip::Method::Options) == 2);
}

TEST_CASE("Redirector: draining -> probe 503, INVITE still 302") {
    Rig rig;
    rig.store.bindings = {binding("sip:bob@192.0.2.1", 1000)};
    rig.r->set_draining(true);
    rig.feed(make("OPTIONS", "sip:example.com"));
    REQUIRE(rig.sender.sent.size() == 1);
    CHECK(rig.sender.last()->code() == 503);
    rig.feed(Req{});
    rig.store.answer();
    REQUIRE(rig.sender.sent.size() == 2);
    CHECK(rig.sender.last()->code() == 302);
    rig.r->set_draining(false);
    rig.feed(make("OPTIONS", "sip:example.com"));
    CHECK(rig.sender.last()->code() == 200);
}

TEST_CASE("Redirector: OPTIONS to the server with Require -> 420 listing every tag") {
    Rig rig;
    Req r = make("OPTIONS", "sip:example.com");
    r.extra.push_back("Require: foo, bar");
    r.extra.push_back("Require: baz");
    rig.feed(r);
    REQUIRE(rig.sender.sent.size() == 1);
    auto p = rig.sender.last();
    CHECK(p->code() == 420);
    std::vector<std::string> unsupported = p->headers(sip::HeaderId::Unsupported);
    CHECK(unsupported == std::vector<std::string>{"foo", "bar", "baz"});
    CHECK(rig.responses(420) == 1);
}

TEST_CASE("Redirector: ACK is absorbed; CANCEL and REGISTER are answered") {
    Rig rig;
    rig.feed(make("ACK", "sip:bob@example.com"));
    CHECK(rig.sender.sent.empty());
    CHECK(rig.store.asked.empty());
    CHECK(rig.requests(sip::Method::Ack) == 1);

    rig.feed(make("CANCEL", "sip:bob@example.com"));
    REQUIRE(rig.sender.sent.size() == 1);
    CHECK(rig.sender.last()->code() == 200);

    rig.feed(make("REGISTER", "sip:example.com"));
    REQUIRE(rig.sender.sent.size() == 2);
    auto p = rig.sender.last();
    CHECK(p->code() == 405);
    CHECK(!p->header("Allow").empty());
    CHECK(rig.store.asked.empty());
}

TEST_CASE("Redirector: unknown method and OPTIONS to a user are looked up") {
    Rig rig;
    rig.store.bindings = {binding("sip:bob@192.0.2.1")};
    Req foo = make("FOO", "sip:bob@example.com");
    foo.cseq_method = "FOO";
    rig.feed(foo);
    rig.feed(make("OPTIONS", "sip:bob@example.com"));
    REQUIRE(rig.store.pending.size() == 2);
    rig.store.answer();
    rig.store.answer();
    REQUIRE(rig.sender.sent.size() == 2);
    CHECK(parse_response(rig.sender.sent[0].bytes)->header("CSeq") == "314159 FOO");
    CHECK(parse_response(rig.sender.sent[0].bytes)->code() == 302);
    CHECK(parse_response(rig.sender.sent[1].bytes)->code() == 302);
    CHECK(rig.requests(sip::Method::Unknown) == 1);
    CHECK(rig.requests(sip::Method::Options) == 1);
}

TEST_CASE("Redirector: oversized datagram -> 513, judged without copying") {
    Config c = base_config();
    c.max_message = 700;
    Rig rig(c);
    Req r;
    r.extra.push_back("X-Pad: " + std::string(2000, 'p'));
    rig.feed(r);
    REQUIRE(rig.sender.sent.size() == 1);
    CHECK(rig.sender.last()->code() == 513);
    CHECK(rig.store.asked.empty());
    CHECK(rig.responses(513) == 1);
}

TEST_CASE("Redirector: drops are counted by reason, nothing is sent") {
    Rig rig;
    rig.feed(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    rig.feed(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
    Req novia;
    novia.via.clear();
    rig.feed(novia);
    rig.feed(std::string(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
        "To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"));
    CHECK(rig.sender.sent.empty());
    CHECK(rig.dropped(base::DropReason::NotSip) == 2);
    CHECK(rig.dropped(base::DropReason::NoVia) == 1);
    CHECK(rig.dropped(base::DropReason::Response) == 1);
    for (std::size_t m = 0; m < sip::kMethodCount; ++m) CHECK(rig.messages.requests[m].get() == 0);
}

TEST_CASE("Redirector: a socket refusing the answer counts send_failed") {
    Rig rig;
    rig.sender.accept = false;
    rig.feed(make("CANCEL", "sip:bob@example.com"));
    rig.feed(Req{});
    rig.store.answer();
    CHECK(rig.dropped(base::DropReason::SendFailed) == 2);
    CHECK(rig.responses(200) == 0);
    CHECK(rig.responses(404) == 0);
    CHECK(rig.r->inflight() == 0);
}

TEST_CASE("Redirector: stats - responses by code, requests by method, contacts cut") {
    Rig rig;
    for (int i = 0; i < 40; ++i)
        rig.store.bindings.push_back(binding("sip:long-contact-user-name-number-" +
                                                 std::to_string(i) + "@192.0.2." +
                                                 std::to_string(i + 1) + ":5060;transport=udp",
                                             static_cast<uint16_t>(1000 - i)));
    rig.feed(Req{});
    rig.store.answer(StoreError::None, 3);
    auto p = rig.sender.last();
    CHECK(p->code() == 302);
    CHECK(rig.sender.sent.back().bytes.size() <= 1300);
    CHECK(rig.stats.contacts_cut.get() == 40 - p->contacts.size());
    CHECK(rig.stats.contacts_cut.get() > 0);
    CHECK(rig.stats.garbage_bindings.get() == 3);

    rig.store.bindings.clear();
    rig.feed(make("BYE", "sip:bob@example.com"));
    rig.store.answer();
    Req bad;
    bad.from.clear();
    rig.feed(bad);
    Req hops;
    hops.max_forwards = "0";
    rig.feed(hops);
    rig.feed(make("INVITE", "urn:service:sos"));
    CHECK(rig.responses(302) == 1);
    CHECK(rig.responses(404) == 1);
    CHECK(rig.responses(400) == 1);
    CHECK(rig.responses(483) == 1);
    CHECK(rig.responses(416) == 1);
    CHECK(rig.requests(sip::Method::Invite) == 4);
    CHECK(rig.requests(sip::Method::Bye) == 1);
    CHECK(rig.r->inflight() == 0);
    CHECK(rig.stats.inflight_lookups.get() == 0);
}

TEST_CASE("Redirector: a retransmission gets the byte-identical answer") {
    Rig rig;
    rig.store.bindings = {binding("sip:bob@192.0.2.1"), binding("sip:bob@192.0.2.2", 300)};
    rig.feed(Req{});
    rig.store.answer();
    rig.feed(Req{});
    rig.store.answer();
    REQUIRE(rig.sender.sent.size() == 2);
    CHECK(rig.sender.sent[0].bytes == rig.sender.sent[1].bytes);

    // Another instance sharing the secret answers the same.
    Rig other;
    other.store.bindings = rig.store.bindings;
    other.feed(Req{});
    other.store.answer();
    CHECK(other.sender.sent[0].bytes == rig.sender.sent[0].bytes);
}

TEST_CASE("Redirector: garbage never crashes it") {
    Rig rig;
    std::string base = Req{}.text();
    // Every prefix of a valid request: dropped or answered, never a crash, inflight consistent.
    for (std::size_t n = 0; n <= base.size(); ++n) {
        std::string cut = base.substr(0, n);
        rig.r->on_datagram(cut, rig.peer);
        while (!rig.store.pending.empty()) rig.store.answer();
    }
    CHECK(rig.r->inflight() == 0);
    CHECK(rig.stats.inflight_lookups.get() == 0);
}

// ---------------------------------------------------------------------------------------------
// The reflection guard (--max-amplification): no answer to an untrusted source is larger than
// max_amplification times its request.

namespace {

// An INVITE as small as a valid one gets (a spoofer's best lever), 150-odd bytes.
std::string tiny_invite(std::string_view branch = "z9hG4bK1") {
    return "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=" +
           std::string(branch) +
           "\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\n"
           "CSeq: 1 INVITE\r\n\r\n";
}

// 20 long contacts, q 1000, 990, ... (stored in reverse order).
std::vector<Binding> many_long_contacts() {
    std::vector<Binding> bs;
    for (int i = 19; i >= 0; --i)
        bs.push_back(binding("sip:a-rather-long-user-name-number-" + std::to_string(i) +
                                 "@gateway-" + std::to_string(i) +
                                 ".carrier.example.net;transport=udp",
                             static_cast<uint16_t>(1000 - 10 * i)));
    return bs;
}

}  // namespace

TEST_CASE("Redirector: amplification guard - a tiny INVITE gets a 302 of <= 3x, lowest q cut") {
    Rig rig;
    rig.store.bindings = many_long_contacts();
    const std::string req = tiny_invite();
    REQUIRE(req.size() < 200);
    rig.feed(req);
    rig.store.answer();
    REQUIRE(rig.sender.sent.size() == 1);
    const std::string& out = rig.sender.sent.back().bytes;
    auto p = rig.sender.last();
    REQUIRE(p->code() == 302);
    CHECK(out.size() <= 3 * req.size());
    REQUIRE(!p->contacts.empty());
    CHECK(p->contacts.size() < 20);
    // The highest q ones, in order; the cut counted.
    for (std::size_t i = 0; i < p->contacts.size(); ++i) {
        CAPTURE(i);
        CHECK(p->contacts[i].q == static_cast<uint16_t>(1000 - 10 * i));
    }
    CHECK(rig.stats.contacts_cut.get() == 20 - p->contacts.size());
    // Nothing that fits was cut: the next contact's line would pass the bound.
    const std::size_t k = p->contacts.size();
    std::string q = std::to_string(1000 - 10 * k);  // three digits below 1000
    while (q.back() == '0') q.pop_back();
    const std::size_t next_line = std::string("Contact: <>;q=0.;expires=3600\r\n").size() +
                                  q.size() + rig.store.bindings[19 - k].contact.size();
    CHECK(out.size() + next_line > 3 * req.size());

    // The same request from a trusted source (in --allow): only the 1300-byte cap applies.
    rig.feed(tiny_invite("z9hG4bK2"), true);
    rig.store.answer();
    auto t = rig.sender.last();
    REQUIRE(t->code() == 302);
    CHECK(t->contacts.size() > p->contacts.size());
    CHECK(rig.sender.sent.back().bytes.size() > 3 * req.size());
    CHECK(rig.sender.sent.back().bytes.size() <= 1300);
}

TEST_CASE("Redirector: amplification guard - a larger request earns a larger answer") {
    Rig rig;
    rig.store.bindings = many_long_contacts();
    std::size_t last_contacts = 0;
    for (std::size_t pad : {0, 100, 200, 300}) {
        CAPTURE(pad);
        Req r;
        r.uri = "sip:bob@example.com";
        if (pad != 0) r.extra.push_back("X-Pad: " + std::string(pad, 'p'));
        const std::string req = r.text();
        rig.feed(req);
        rig.store.answer();
        auto p = rig.sender.last();
        REQUIRE(p->code() == 302);
        CHECK(rig.sender.sent.back().bytes.size() <= std::min<std::size_t>(1300, 3 * req.size()));
        CHECK(p->contacts.size() >= last_contacts);
        last_contacts = p->contacts.size();
    }
    CHECK(last_contacts > 0);
}

TEST_CASE("Redirector: amplification guard - not even one contact fits: 480, as for the size cap") {
    Rig rig;
    rig.store.bindings = {binding("sip:" + std::string(500, 'x') + "@192.0.2.1")};
    const std::string req = tiny_invite();
    rig.feed(req);
    rig.store.answer();
    REQUIRE(rig.sender.sent.size() == 1);
    auto p = rig.sender.last();
    CHECK(p->code() == 480);
    CHECK(p->contacts.empty());
    CHECK(!p->header("Retry-After").empty());
    CHECK(rig.sender.sent.back().bytes.size() <= 3 * req.size());
    CHECK(rig.stats.contacts_cut.get() == 1);
    // Trusted: the contact fits the 1300 bytes.
    rig.feed(tiny_invite("z9hG4bK2"), true);
    rig.store.answer();
    CHECK(rig.sender.last()->code() == 302);
}

TEST_CASE("Redirector: amplification guard - every answer, not just the 302") {
    Config c = base_config();
    c.max_amplification = 1.0;
    Rig rig(c);
    // A REGISTER's 405 carries a long Allow line: larger than a tiny REGISTER. Not sent, counted.
    const std::string reg =
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK9\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n";
    rig.feed(reg);
    CHECK(rig.sender.sent.empty());
    CHECK(rig.dropped(base::DropReason::ResponseTooLarge) == 1);
    CHECK(rig.responses(405) == 0);
    // Trusted, the same REGISTER gets its 405.
    rig.feed(reg, true);
    REQUIRE(rig.sender.sent.size() == 1);
    CHECK(rig.sender.last()->code() == 405);
    // A larger REGISTER earns the 405 under the same bound.
    Req big = make("REGISTER", "sip:example.com");
    big.extra.push_back("X-Pad: " + std::string(200, 'p'));
    rig.feed(big);
    REQUIRE(rig.sender.sent.size() == 2);
    CHECK(rig.sender.last()->code() == 405);
    CHECK(rig.sender.sent.back().bytes.size() <= big.text().size());
}

TEST_CASE("Redirector: amplification guard off (0) - only the size cap applies") {
    Config c = base_config();
    c.max_amplification = 0;
    Rig rig(c);
    rig.store.bindings = many_long_contacts();
    const std::string req = tiny_invite();
    rig.feed(req);
    rig.store.answer();
    auto p = rig.sender.last();
    REQUIRE(p->code() == 302);
    CHECK(rig.sender.sent.back().bytes.size() > 3 * req.size());
    CHECK(rig.sender.sent.back().bytes.size() <= 1300);
    CHECK(rig.stats.contacts_cut.get() == 20 - p->contacts.size());
}

TEST_CASE("Redirector: over a stream every contact fits, up to max_response_stream") {
    Rig rig;
    rig.store.bindings = many_long_contacts();
    sip::Peer tcp = rig.peer;
    tcp.transport = sip::Transport::Tcp;
    tcp.connection = 42;
    // A tiny request: over UDP the amplification guard would cut to 3x its size.
    CHECK(rig.r->on_datagram(tiny_invite(), tcp));  // the look-up is pending: answer later
    rig.store.answer();
    auto p = rig.sender.last();
    REQUIRE(p->code() == 302);
    CHECK(p->contacts.size() == 20);
    CHECK(rig.sender.sent.back().bytes.size() > 1300);
    CHECK(rig.stats.contacts_cut.get() == 0);

    // max_response_stream bounds it like max_response bounds UDP.
    Config c = base_config();
    c.max_response_stream = 1300;
    Rig small(c);
    small.store.bindings = many_long_contacts();
    CHECK(small.r->on_datagram(tiny_invite(), tcp));
    small.store.answer();
    auto q = small.sender.last();
    REQUIRE(q->code() == 302);
    CHECK(q->contacts.size() < 20);
    CHECK(q->contacts.size() > p->contacts.size() / 4);  // no amplification guard: 1300 bytes
    CHECK(small.sender.sent.back().bytes.size() <= 1300);
}

TEST_CASE("Redirector: on_datagram says whether the answer is still to come") {
    Rig rig;
    rig.store.bindings = {binding("sip:bob@192.0.2.4")};
    CHECK(rig.r->on_datagram(Req{}.text(), rig.peer));  // a look-up in flight
    CHECK(rig.sender.sent.empty());
    rig.store.answer();
    CHECK(rig.sender.sent.size() == 1);
    CHECK_FALSE(rig.r->on_datagram(make("REGISTER", "sip:example.com").text(), rig.peer));
    CHECK(rig.sender.sent.size() == 2);  // answered at once
    CHECK_FALSE(rig.r->on_datagram(make("ACK", "sip:bob@example.com").text(), rig.peer));
    CHECK_FALSE(rig.r->on_datagram("garbage", rig.peer));
    CHECK(rig.sender.sent.size() == 2);  // nothing to answer
    rig.store.at_once = true;            // a near-cache hit: answered inside lookup()
    CHECK_FALSE(rig.r->on_datagram(Req{}.text(), rig.peer));
    CHECK(rig.sender.sent.size() == 3);
}

TEST_CASE("Redirector: reject answers a stream head that cannot be framed, when it can") {
    Rig rig;
    Req r;
    r.content_length = "";  // RFC 3261 §18.3: required on a stream
    const std::string head = r.text();
    CHECK(rig.r->reject(head, rig.peer, 400, "Missing Content-Length"));
    auto p = rig.sender.last();
    CHECK(p->code() == 400);
    CHECK(p->msg->reason == "Missing Content-Length");
    CHECK(rig.store.asked.empty());
    r.content_length = "99999";
    CHECK(rig.r->reject(r.text(), rig.peer, 513, "Message Too Large"));
    CHECK(rig.sender.last()->code() == 513);
    // Nothing to answer without a Via, or without a request line.
    r.via = "";
    CHECK_FALSE(rig.r->reject(r.text(), rig.peer, 400, "Missing Content-Length"));
    CHECK_FALSE(rig.r->reject("\r\n\r\n", rig.peer, 400, "Missing Content-Length"));
    CHECK(rig.sender.sent.size() == 2);
}

TEST_SUITE_END();
