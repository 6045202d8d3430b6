// The redirect service of DESIGN §4, rule by rule: decide() (classification and its order),
// write_redirect() (the 302 / 404 / 503 it writes) and Redirector (slots, store, sender, stats)
// against a fake LookupStore, a fake Sender and fake clocks. No sockets, no Redis.
#include "sipr/redirect/redirect.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include "support/peer.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/base/buffer_writer.h"
#include "sipr/location/binding.h"
#include "sipr/sip/headers.h"
#include "sipr/sip/message.h"

namespace {

using namespace sipr;
using location::Binding;
using location::BindingView;
using location::StoreError;
using redirect::Config;
using redirect::Decision;
using redirect::Step;

const base::SipKey kKey = base::derive_sip_key("redirect unit tests");
constexpr int64_t kNow = 1'700'000'000'000;  // wall clock of the tests, unix ms

// ---------------------------------------------------------------------------------------------
// Requests

// One request; an empty header value leaves that header out.
struct Req {
    std::string method = "INVITE";
    std::string uri = "sip:bob@example.com";
    std::string cseq_method;  // "" = method
    std::string via = "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds";
    std::string from = "Alice <sip:alice@atlanta.com>;tag=1928301774";
    std::string to = "Bob <sip:bob@example.com>";
    std::string call_id = "a84b4c76e66710@pc33.atlanta.com";
    std::string cseq_number = "314159";
    std::string max_forwards = "70";
    std::vector<std::string> extra;  // whole header lines without CRLF
    std::string content_length = "0";
    std::string body;

    [[nodiscard]] std::string text() const {
        std::string t = method + " " + uri + " SIP/2.0\r\n";
        if (!via.empty()) t += "Via: " + via + "\r\n";
        if (!max_forwards.empty()) t += "Max-Forwards: " + max_forwards + "\r\n";
        if (!to.empty()) t += "To: " + to + "\r\n";
        if (!from.empty()) t += "From: " + from + "\r\n";
        if (!call_id.empty()) t += "Call-ID: " + call_id + "\r\n";
        if (!cseq_number.empty())
            t += "CSeq: " + cseq_number + " " + (cseq_method.empty() ? method : cseq_method) +
                 "\r\n";
        t += "Contact: <sip:alice@pc33.atlanta.com>\r\n";
        for (const std::string& e : extra) t += e + "\r\n";
        if (!content_length.empty()) t += "Content-Length: " + content_length + "\r\n";
        t += "\r\n";
        t += body;
        return t;
    }
};

Req make(std::string method, std::string uri) {
    Req r;
    r.method = std::move(method);
    r.uri = std::move(uri);
    return r;
}

// decide() over one request, with storage that outlives the Decision's views.
struct Decided {
    std::string bytes;
    std::unique_ptr<sip::Message> msg = std::make_unique<sip::Message>();
    sip::RequestCore core;
    std::array<char, sip::kMaxAorLength> aor_buf{};
    Decision d;
};

std::unique_ptr<Decided> decide(const Config& c, std::string bytes, bool store_up = true,
                                bool draining = false) {
    auto out = std::make_unique<Decided>();
    out->bytes = std::move(bytes);
    out->d =
        redirect::decide(c, out->bytes, *out->msg, out->core, out->aor_buf, store_up, draining);
    return out;
}

std::unique_ptr<Decided> decide(const Config& c, const Req& r, bool store_up = true,
                                bool draining = false) {
    return decide(c, r.text(), store_up, draining);
}

Config base_config() {
    Config c;
    c.tag_key = kKey;
    return c;
}

// ---------------------------------------------------------------------------------------------
// Responses

// A response parsed back, with its Contacts.
struct Parsed {
    std::string text;
    std::unique_ptr<sip::Message> msg = std::make_unique<sip::Message>();
    sip::ParseStatus status = sip::ParseStatus::Malformed;
    std::vector<sip::Contact> contacts;

    [[nodiscard]] uint16_t code() const { return msg->status_code; }
    [[nodiscard]] std::string header(std::string_view name) const {
        const sip::Header* h = msg->find(name);
        return h == nullptr ? std::string() : std::string(h->value);
    }
    [[nodiscard]] std::vector<std::string> headers(sip::HeaderId id) const {
        std::vector<std::string> v;
        for (std::size_t i = 0; i < msg->header_count; ++i)
            if (msg->headers[i].id == id) v.emplace_back(msg->headers[i].value);
        return v;
    }
    [[nodiscard]] std::vector<std::string> contact_uris() const {
        std::vector<std::string> v;
        for (const sip::Contact& c : contacts) v.emplace_back(c.addr.uri_text);
        return v;
    }
};

std::unique_ptr<Parsed> parse_response(std::string_view text) {
    auto p = std::make_unique<Parsed>();
    p->text.assign(text);
    p->status = sip::parse_message(p->text, *p->msg);
    if (p->status != sip::ParseStatus::Ok) return p;
    for (std::size_t i = 0; i < p->msg->header_count; ++i) {
        if (p->msg->headers[i].id != sip::HeaderId::Contact) continue;
        sip::Contact c;
        if (sip::parse_contact(p->msg->headers[i].value, c))
            p->contacts.push_back(c);
        else
            p->contacts.push_back(sip::Contact{});  // counted, and fails the URI checks
    }
    return p;
}

bool contains(std::string_view hay, std::string_view needle) {
    return hay.find(needle) != std::string_view::npos;
}

// ---------------------------------------------------------------------------------------------
// Bindings and write_redirect()

Binding binding(std::string contact, uint16_t q = 1000, int64_t expires_in_ms = 3'600'000,
                int64_t updated_ago_ms = 10'000) {
    Binding b;
    b.contact = std::move(contact);
    b.q = q;
    b.expires_at_ms = kNow + expires_in_ms;
    b.updated_at_ms = kNow - updated_ago_ms;
    b.call_id = "reg-call-id@ua";
    b.cseq = 7;
    b.received = "192.0.2.50:5060";
    return b;
}

// Views of owned bindings, as a store hands them over.
struct Views {
    std::vector<std::string> packed;
    std::vector<BindingView> views;
    explicit Views(const std::vector<Binding>& bs) {
        packed.reserve(bs.size());
        for (const Binding& b : bs) packed.push_back(location::pack_binding(b));
        views.resize(packed.size());
        for (std::size_t i = 0; i < packed.size(); ++i)
            REQUIRE(location::unpack_binding(packed[i], views[i]));
    }
};

struct Written {
    std::vector<char> out = std::vector<char>(8192);  // res.response points here
    redirect::WriteResult res;
    std::unique_ptr<Parsed> parsed;
};

Written write(const Config& c, const Req& r, const std::vector<Binding>& bs,
              StoreError err = StoreError::None, std::size_t limit = 1300, int64_t now = kNow) {
    auto d = decide(c, r);
    REQUIRE(d->d.step == Step::Lookup);
    Views v(bs);
    redirect::LookupOutcome found;
    found.error = err;
    found.bindings = v.views;
    found.now_ms = now;
    sip::Source src{"192.0.2.10", 5062};
    Written w;
    w.res = redirect::write_redirect(c, *d->msg, d->core, found, src, limit, w.out);
    w.parsed = parse_response(w.res.response);
    return w;
}

Written write(const std::vector<Binding>& bs) {
    return write(base_config(), Req{}, bs);
}

// ---------------------------------------------------------------------------------------------
// Fakes for Redirector

uint64_t g_now_us = 1'000'000;
int64_t g_wall_ms = kNow;
uint64_t fake_now_us() noexcept {
    return g_now_us;
}
int64_t fake_wall_ms() noexcept {
    return g_wall_ms;
}

using test::make_peer;

class FakeSender final : public sip::Sender {
  public:
    struct Sent {
        std::string bytes;
        std::string ip;
        uint16_t port = 0;
    };
    std::vector<Sent> sent;
    bool accept = true;

    bool send(std::string_view bytes, const sip::Peer& to, uint16_t port) noexcept override {
        if (!accept) return false;
        sent.push_back(Sent{std::string(bytes), std::string(to.ip, to.ip_len), port});
        return true;
    }
    [[nodiscard]] std::unique_ptr<Parsed> last() const {
        REQUIRE(!sent.empty());
        return parse_response(sent.back().bytes);
    }
};

// Keeps look-ups pending until the test answers them; every AOR has the same bindings.
class FakeStore final : public location::LookupStore {
  public:
    struct Pending {
        std::string aor;
        location::LookupCallback cb = nullptr;
        void* ctx = nullptr;
    };
    std::vector<Pending> pending;
    std::vector<std::string> asked;  // every AOR asked for, refused ones included
    StoreError refuse = StoreError::None;
    bool up = true;
    bool at_once = false;  // answer inside lookup(), as a near-cache hit does
    bool from_cache = false;
    std::vector<Binding> bindings;

    StoreError lookup(std::string_view aor, location::LookupCallback cb,
                      void* ctx) noexcept override {
        asked.emplace_back(aor);
        if (refuse != StoreError::None) return refuse;
        pending.push_back(Pending{std::string(aor), cb, ctx});
        if (at_once) answer();
        return StoreError::None;
    }
    [[nodiscard]] bool available() const noexcept override { return up; }

    // Answers the oldest pending look-up; the views die when this returns.
    void answer(StoreError err = StoreError::None, std::size_t garbage = 0) {
        REQUIRE(!pending.empty());
        Pending p = pending.front();
        pending.erase(pending.begin());
        auto v = std::make_unique<Views>(bindings);
        location::LookupReply reply;
        reply.error = err;
        if (err == StoreError::None) reply.bindings = v->views;
        reply.garbage = garbage;
        reply.from_cache = from_cache;
        p.cb(p.ctx, reply);
        // Scribble over the packed bytes before freeing them: a view kept past the call shows.
        for (std::string& s : v->packed) std::fill(s.begin(), s.end(), '#');
    }
};

struct Rig {
    FakeStore store;
    FakeSender sender;
    base::ServiceStats stats;
    sip::Peer peer = make_peer("192.0.2.10", 5062);
    std::unique_ptr<redirect::Redirector> r;

    explicit Rig(Config c = base_config()) {
        g_now_us = 1'000'000;
        g_wall_ms = kNow;
        r = std::make_unique<redirect::Redirector>(std::move(c), store, sender, stats, &fake_now_us,
                                                   &fake_wall_ms);
    }
    void feed(const Req& req) { feed(req.text()); }
    void feed(const std::string& bytes, bool trusted = false) {
        r->on_datagram(bytes, peer, trusted);
    }
    [[nodiscard]] uint64_t responses(uint16_t code) const { return stats.responses[code].get(); }
    [[nodiscard]] uint64_t requests(sip::Method m) const {
        return stats.requests[static_cast<std::size_t>(m)].get();
    }
    [[nodiscard]] uint64_t dropped(base::DropReason d) const {
        return stats.dropped[static_cast<std::size_t>(d)].get();
    }
    [[nodiscard]] uint64_t redis_errors(base::RedisErrorKind k) const {
        return stats.redis_errors[static_cast<std::size_t>(k)].get();
    }
};

}  // namespace

// =============================================================================================
// decide(): one rule at a time

TEST_SUITE_BEGIN("redirect");

TEST_CASE("decide: INVITE is looked up under its normalised AOR") {
    auto d = decide(base_config(), Req{});
    REQUIRE(d->d.step == Step::Lookup);
    CHECK(d->d.aor == "sip:bob@example.com");
    // The AOR view points into the caller's buffer.
    CHECK(d->d.aor.data() == d->aor_buf.data());
}

TEST_CASE("decide: every method but ACK, CANCEL, REGISTER and OPTIONS-to-server is redirected") {
    for (const char* m :
         {"BYE", "MESSAGE", "SUBSCRIBE", "NOTIFY", "REFER", "INFO", "PRACK", "UPDATE", "PUBLISH"}) {
        CAPTURE(m);
        auto d = decide(base_config(), make(m, "sip:bob@example.com"));
        CHECK(d->d.step == Step::Lookup);
        CHECK(d->d.aor == "sip:bob@example.com");
    }
}

TEST_CASE("decide: an unknown method is redirected (RFC 3261 §8.3)") {
    Req r = make("FOO", "sip:bob@example.com");
    r.cseq_method = "FOO";
    auto d = decide(base_config(), r);
    REQUIRE(d->d.step == Step::Lookup);
    CHECK(d->d.aor == "sip:bob@example.com");
    CHECK(d->msg->method == sip::Method::Unknown);
}

TEST_CASE("decide: ACK is absorbed") {
    auto d = decide(base_config(), make("ACK", "sip:bob@example.com"));
    CHECK(d->d.step == Step::Absorb);
    // Even when it would fail the later checks.
    Req r = make("ACK", "sip:bob@example.com");
    r.max_forwards = "0";
    CHECK(decide(base_config(), r)->d.step == Step::Absorb);
}

TEST_CASE("decide: CANCEL gets 200 OK") {
    auto d = decide(base_config(), make("CANCEL", "sip:bob@example.com"));
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 200);
    CHECK(d->d.reason == "OK");
}

TEST_CASE("decide: REGISTER gets 405 with Allow") {
    auto d = decide(base_config(), make("REGISTER", "sip:example.com"));
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 405);
    CHECK(d->d.reason == "Method Not Allowed");
    CHECK(d->d.extra.substr(0, 7) == "Allow: ");
    CHECK(contains(d->d.extra, "INVITE"));
    CHECK(!contains(d->d.extra, "REGISTER"));
    CHECK(d->d.extra.substr(d->d.extra.size() - 2) == "\r\n");
}

TEST_CASE("decide: OPTIONS to the server is the health probe") {
    Req r = make("OPTIONS", "sip:example.com");
    SUBCASE("store up: 200 with Allow") {
        auto d = decide(base_config(), r, true);
        REQUIRE(d->d.step == Step::Respond);
        CHECK(d->d.status == 200);
        CHECK(d->d.extra.substr(0, 7) == "Allow: ");
        CHECK(contains(d->d.extra, "OPTIONS"));
    }
    SUBCASE("store down: 503 with Retry-After") {
        auto d = decide(base_config(), r, false);
        REQUIRE(d->d.step == Step::Respond);
        CHECK(d->d.status == 503);
        CHECK(contains(d->d.extra, "Retry-After: "));
    }
    SUBCASE("store down, health_ignores_redis: 200 again") {
        Config c = base_config();
        c.health_ignores_redis = true;
        auto d = decide(c, r, false);
        REQUIRE(d->d.step == Step::Respond);
        CHECK(d->d.status == 200);
        CHECK(contains(d->d.extra, "Allow: "));
    }
    SUBCASE("an IP address with a port is the server too") {
        auto d = decide(base_config(), make("OPTIONS", "sip:192.0.2.1:5070"), true);
        REQUIRE(d->d.step == Step::Respond);
        CHECK(d->d.status == 200);
    }
}

TEST_CASE("decide: draining answers the health probe 503 and nothing else differently") {
    SUBCASE("probe: 503 with Retry-After, even with the store up and health_ignores_redis") {
        Config c = base_config();
        c.health_ignores_redis = true;
        auto d = decide(c, make("OPTIONS", "sip:example.com"), true, true);
        REQUIRE(d->d.step == Step::Respond);
        CHECK(d->d.status == 503);
        CHECK(d->d.reason == "Service Unavailable");
        CHECK(contains(d->d.extra, "Retry-After: "));
    }
    SUBCASE("probe with Require: still 420 (answered before health)") {
        Req r = make("OPTIONS", "sip:example.com");
        r.extra.push_back("Require: foo");
        auto d = decide(base_config(), r, true, true);
        REQUIRE(d->d.step == Step::Respond);
        CHECK(d->d.status == 420);
    }
    SUBCASE("INVITE and OPTIONS to a user: looked up as usual") {
        for (const char* m : {"INVITE", "OPTIONS"}) {
            auto d = decide(base_config(), make(m, "sip:bob@example.com"), true, true);
            REQUIRE(d->d.step == Step::Lookup);
            CHECK(d->d.aor == "sip:bob@example.com");
        }
    }
}

TEST_CASE("decide: OPTIONS to a user is redirected like any request") {
    auto d = decide(base_config(), make("OPTIONS", "sip:bob@example.com"), false);
    REQUIRE(d->d.step == Step::Lookup);
    CHECK(d->d.aor == "sip:bob@example.com");
}

TEST_CASE("decide: OPTIONS to the server with Require gets 420") {
    Req r = make("OPTIONS", "sip:example.com");
    r.extra.push_back("Require: foo");
    auto d = decide(base_config(), r);
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 420);
    CHECK(d->d.reason == "Bad Extension");
}

TEST_CASE("decide: an unknown Require on an INVITE is ignored (RFC 3261 §8.3)") {
    Req r;
    r.extra.push_back("Require: foo, 100rel");
    r.extra.push_back("Proxy-Require: bar");
    r.extra.push_back("X-Unknown-Header: whatever");
    auto d = decide(base_config(), r);
    REQUIRE(d->d.step == Step::Lookup);
    CHECK(d->d.aor == "sip:bob@example.com");
}

TEST_CASE("decide: checks in order - size first, 513") {
    Config c = base_config();
    c.max_message = 600;
    Req r;
    r.extra.push_back("X-Pad: " + std::string(700, 'a'));
    auto d = decide(c, r);
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 513);
    // Over the limit wins over a missing From too.
    r.from.clear();
    d = decide(c, r);
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 513);
    // Exactly at the limit is fine.
    Req fit;
    std::string text = fit.text();
    REQUIRE(text.size() < 600);
    fit.extra.push_back("X-Pad: " + std::string(600 - text.size() - 9, 'a'));
    REQUIRE(fit.text().size() == 600);
    CHECK(decide(c, fit)->d.step == Step::Lookup);
}

TEST_CASE("decide: an unparsable start line is dropped as not_sip") {
    for (std::string bytes : {std::string("hello world\r\n\r\n"), std::string("\x01\x02\x03\x04"),
                              std::string(""), std::string("INVITE\r\n\r\n"),
                              std::string("INVITE sip:bob@example.com HTTP/1.1\r\n\r\n")}) {
        CAPTURE(bytes);
        auto d = decide(base_config(), bytes);
        CHECK(d->d.step == Step::Drop);
        CHECK(d->d.drop == base::DropReason::NotSip);
    }
}

TEST_CASE("decide: a request without Via is dropped as no_via") {
    Req r;
    r.via.clear();
    auto d = decide(base_config(), r);
    CHECK(d->d.step == Step::Drop);
    CHECK(d->d.drop == base::DropReason::NoVia);
    // No Via beats a missing From: there is nowhere to send the 400.
    r.from.clear();
    d = decide(base_config(), r);
    CHECK(d->d.step == Step::Drop);
    CHECK(d->d.drop == base::DropReason::NoVia);
}

TEST_CASE("decide: a response sent to the server is dropped") {
    std::string resp =
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
        "To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    auto d = decide(base_config(), resp);
    CHECK(d->d.step == Step::Drop);
    CHECK(d->d.drop == base::DropReason::Response);
}

TEST_CASE("decide: missing or malformed mandatory headers get 400 naming the fault") {
    struct Case {
        const char* name;
        void (*edit)(Req&);
        const char* reason;
    };
    const Case cases[] = {
        {"no From", [](Req& r) { r.from.clear(); }, "Missing From Header"},
        {"bad From", [](Req& r) { r.from = "\"Alice <sip:alice@atlanta.com>"; },
         "Malformed From Header"},
        {"no To", [](Req& r) { r.to.clear(); }, "Missing To Header"},
        {"bad To", [](Req& r) { r.to = "<sip:bob@example.com"; }, "Malformed To Header"},
        {"no Call-ID", [](Req& r) { r.call_id.clear(); }, "Missing Call-ID Header"},
        {"bad Call-ID", [](Req& r) { r.call_id = "two words"; }, "Malformed Call-ID Header"},
        {"no CSeq", [](Req& r) { r.cseq_number.clear(); }, "Missing CSeq Header"},
        {"bad CSeq", [](Req& r) { r.cseq_number = "abc"; }, "Malformed CSeq Header"},
        {"CSeq method mismatch", [](Req& r) { r.cseq_method = "BYE"; },
         "CSeq Method Does Not Match Request"},
        {"Content-Length beyond the datagram", [](Req& r) { r.content_length = "500"; },
         "Bad Content-Length"},
        {"Content-Length beyond a body",
         [](Req& r) {
             r.content_length = "10";
             r.body = "v=0\r\n";
         },
         "Bad Content-Length"},
        {"bad Max-Forwards", [](Req& r) { r.max_forwards = "many"; },
         "Malformed Max-Forwards Header"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        Req r;
        c.edit(r);
        auto d = decide(base_config(), r);
        REQUIRE(d->d.step == Step::Respond);
        CHECK(d->d.status == 400);
        CHECK(d->d.reason == c.reason);
    }
}

TEST_CASE("decide: missing From comes before missing To, Call-ID, CSeq") {
    Req r;
    r.from.clear();
    r.to.clear();
    r.call_id.clear();
    r.cseq_number.clear();
    CHECK(decide(base_config(), r)->d.reason == "Missing From Header");
    r.from = Req{}.from;
    CHECK(decide(base_config(), r)->d.reason == "Missing To Header");
    r.to = Req{}.to;
    CHECK(decide(base_config(), r)->d.reason == "Missing Call-ID Header");
    r.call_id = Req{}.call_id;
    CHECK(decide(base_config(), r)->d.reason == "Missing CSeq Header");
}

TEST_CASE("decide: an unknown method with a CSeq of another method is a 400") {
    Req r = make("FOO", "sip:bob@example.com");
    r.cseq_method = "INVITE";
    auto d = decide(base_config(), r);
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 400);
    CHECK(d->d.reason == "CSeq Method Does Not Match Request");
}

TEST_CASE("decide: Max-Forwards: 0 gets 483 unless configured to redirect") {
    Req r;
    r.max_forwards = "0";
    auto d = decide(base_config(), r);
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 483);
    CHECK(d->d.reason == "Too Many Hops");

    Config c = base_config();
    c.reject_max_forwards_zero = false;
    d = decide(c, r);
    REQUIRE(d->d.step == Step::Lookup);
    CHECK(d->d.aor == "sip:bob@example.com");

    r.max_forwards = "1";
    CHECK(decide(base_config(), r)->d.step == Step::Lookup);
    r.max_forwards.clear();  // absent: not zero
    CHECK(decide(base_config(), r)->d.step == Step::Lookup);
}

TEST_CASE("decide: Max-Forwards 0 comes after the 400 checks") {
    Req r;
    r.max_forwards = "0";
    r.cseq_method = "BYE";
    auto d = decide(base_config(), r);
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 400);
}

TEST_CASE("decide: an unsupported URI scheme gets 416") {
    for (const char* uri :
         {"http://www.example.com/call?who=bob", "urn:service:sos", "mailto:bob@example.com"}) {
        CAPTURE(uri);
        auto d = decide(base_config(), make("INVITE", uri));
        REQUIRE(d->d.step == Step::Respond);
        CHECK(d->d.status == 416);
        CHECK(d->d.reason == "Unsupported URI Scheme");
    }
    // Max-Forwards 0 is checked first.
    Req r = make("INVITE", "urn:service:sos");
    r.max_forwards = "0";
    CHECK(decide(base_config(), r)->d.status == 483);
}

TEST_CASE("decide: AOR normalisation of the Request-URI") {
    struct Case {
        const char* uri;
        const char* aor;
    };
    const Case cases[] = {
        {"sip:bob@EXAMPLE.COM", "sip:bob@example.com"},
        {"SIP:bob@Example.Com:5070;transport=udp?X=y", "sip:bob@example.com"},
        {"sip:Bob@example.com", "sip:Bob@example.com"},  // user part keeps its case
        {"sip:%62ob@example.com", "sip:bob@example.com"},
        {"sip:al%69ce@example.com;lr", "sip:alice@example.com"},
        {"sip:+1-555-123.4567@example.com", "sip:+15551234567@example.com"},
        {"sip:+1(555)123-4567@example.com", "sip:+15551234567@example.com"},
        {"sip:555-1234@example.com;user=phone", "sip:5551234@example.com"},
        {"sips:bob@Example.com", "sips:bob@example.com"},
    };
    for (const Case& k : cases) {
        CAPTURE(k.uri);
        auto d = decide(base_config(), make("INVITE", k.uri));
        REQUIRE(d->d.step == Step::Lookup);
        CHECK(d->d.aor == k.aor);
    }
}

TEST_CASE("decide: tel: maps into the default domain, or 404 without one") {
    Config c = base_config();
    c.default_domain = "example.com";
    auto d = decide(c, make("INVITE", "tel:+1-201-555-0123"));
    REQUIRE(d->d.step == Step::Lookup);
    CHECK(d->d.aor == "sip:+12015550123@example.com");

    d = decide(base_config(), make("INVITE", "tel:+1-201-555-0123"));
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 404);
}

TEST_CASE("decide: a malformed escape in the user part is a 400") {
    auto d = decide(base_config(), make("INVITE", "sip:b%zzob@example.com"));
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 400);
}

TEST_CASE("decide: --domain restricts the served domains") {
    Config c = base_config();
    c.domains = {"example.com", "example.net"};
    CHECK(decide(c, make("INVITE", "sip:bob@example.com"))->d.step == Step::Lookup);
    CHECK(decide(c, make("INVITE", "sip:bob@EXAMPLE.NET:5060"))->d.step == Step::Lookup);
    auto d = decide(c, make("INVITE", "sip:bob@example.org"));
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 404);
    CHECK(d->d.reason == "Not Found");
    // A sub-domain is another domain.
    CHECK(decide(c, make("INVITE", "sip:bob@sub.example.com"))->d.status == 404);
    // tel: lands in the default domain, which must be served too.
    c.default_domain = "example.com";
    CHECK(decide(c, make("INVITE", "tel:+15550100"))->d.step == Step::Lookup);
    c.default_domain = "example.org";
    CHECK(decide(c, make("INVITE", "tel:+15550100"))->d.status == 404);
}

TEST_CASE("decide: an escaped '@' in the user part does not confuse the domain check") {
    // sip:a%40b@example.com has user "a@b" in domain example.com, which is served.
    Config c = base_config();
    c.domains = {"example.com"};
    auto d = decide(c, make("INVITE", "sip:a%40b@example.com"));
    CHECK(d->d.step == Step::Lookup);
    CHECK(d->d.aor == "sip:a@b@example.com");
}

TEST_CASE("decide: a Request-URI without user part (not OPTIONS) gets 404") {
    auto d = decide(base_config(), make("INVITE", "sip:example.com"));
    REQUIRE(d->d.step == Step::Respond);
    CHECK(d->d.status == 404);
}

// =============================================================================================
// write_redirect()

TEST_CASE("write_redirect: 302 with contacts highest q first, ;q= and ;expires=") {
    Written w = write({binding("sip:bob@192.0.2.1", 500), binding("sip:bob@192.0.2.2", 1000),
                       binding("sip:bob@192.0.2.3", 700), binding("sip:bob@192.0.2.4", 5),
                       binding("sip:bob@192.0.2.5", 0)});
    CHECK(w.res.status == 302);
    CHECK(w.res.contacts == 5);
    CHECK(w.res.cut == 0);
    REQUIRE(w.parsed->status == sip::ParseStatus::Ok);
    CHECK(w.parsed->code() == 302);
    CHECK(w.parsed->msg->reason == "Moved Temporarily");
    CHECK(w.parsed->contact_uris() ==
          std::vector<std::string>{"sip:bob@192.0.2.2", "sip:bob@192.0.2.3", "sip:bob@192.0.2.1",
                                   "sip:bob@192.0.2.4", "sip:bob@192.0.2.5"});
    std::vector<std::string> lines = w.parsed->headers(sip::HeaderId::Contact);
    REQUIRE(lines.size() == 5);
    CHECK(lines[0] == "<sip:bob@192.0.2.2>;q=1;expires=3600");
    CHECK(lines[1] == "<sip:bob@192.0.2.3>;q=0.7;expires=3600");
    CHECK(lines[2] == "<sip:bob@192.0.2.1>;q=0.5;expires=3600");
    CHECK(lines[3] == "<sip:bob@192.0.2.4>;q=0.005;expires=3600");
    CHECK(lines[4] == "<sip:bob@192.0.2.5>;q=0;expires=3600");
    for (const sip::Contact& c : w.parsed->contacts) {
        CHECK(c.has_q);
        CHECK(c.has_expires);
    }
    CHECK(w.parsed->contacts[1].q == 700);
}

TEST_CASE("write_redirect: equal q - the most recently registered first") {
    Written w = write({binding("sip:old@192.0.2.1", 800, 3'600'000, 50'000),
                       binding("sip:new@192.0.2.2", 800, 3'600'000, 1'000),
                       binding("sip:mid@192.0.2.3", 800, 3'600'000, 20'000),
                       binding("sip:top@192.0.2.4", 900, 3'600'000, 90'000)});
    CHECK(w.parsed->contact_uris() ==
          std::vector<std::string>{"sip:top@192.0.2.4", "sip:new@192.0.2.2", "sip:mid@192.0.2.3",
                                   "sip:old@192.0.2.1"});
}

TEST_CASE("write_redirect: equal contacts are listed once, the best one kept") {
    Written w = write({binding("sip:bob@192.0.2.1", 300), binding("sip:bob@192.0.2.2", 600),
                       binding("sip:bob@192.0.2.1", 900), binding("SIP:bob@192.0.2.1", 100)});
    CHECK(w.res.status == 302);
    CHECK(w.res.contacts == 2);
    std::vector<std::string> lines = w.parsed->headers(sip::HeaderId::Contact);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "<sip:bob@192.0.2.1>;q=0.9;expires=3600");
    CHECK(lines[1] == "<sip:bob@192.0.2.2>;q=0.6;expires=3600");
}

TEST_CASE("write_redirect: ;expires= is the remaining seconds, rounded up") {
    Written w =
        write({binding("sip:a@192.0.2.1", 1000, 1), binding("sip:b@192.0.2.2", 900, 1'000),
               binding("sip:c@192.0.2.3", 800, 1'001), binding("sip:d@192.0.2.4", 700, 59'999),
               binding("sip:e@192.0.2.5", 600, 7'200'000)});
    REQUIRE(w.parsed->contacts.size() == 5);
    CHECK(w.parsed->contacts[0].expires == 1);
    CHECK(w.parsed->contacts[1].expires == 1);
    CHECK(w.parsed->contacts[2].expires == 2);
    CHECK(w.parsed->contacts[3].expires == 60);
    CHECK(w.parsed->contacts[4].expires == 7200);
}

TEST_CASE("write_redirect: an expired binding is never returned") {
    Written w = write({binding("sip:gone@192.0.2.1", 1000, 0),  // expires exactly now
                       binding("sip:past@192.0.2.2", 1000, -5'000),
                       binding("sip:live@192.0.2.3", 100, 1'000)});
    CHECK(w.res.status == 302);
    CHECK(w.parsed->contact_uris() == std::vector<std::string>{"sip:live@192.0.2.3"});

    w = write({binding("sip:gone@192.0.2.1", 1000, 0), binding("sip:past@192.0.2.2", 1000, -1)});
    CHECK(w.res.status == 404);
    CHECK(w.parsed->code() == 404);
    CHECK(w.parsed->contacts.empty());
}

TEST_CASE("write_redirect: a contact equal to the Request-URI is never returned (loop guard)") {
    Req r = make("INVITE", "sip:bob@192.0.2.7:5070");
    Written w = write(base_config(), r,
                      {binding("sip:bob@192.0.2.7:5070", 1000), binding("sip:bob@192.0.2.8", 500)});
    CHECK(w.res.status == 302);
    CHECK(w.parsed->contact_uris() == std::vector<std::string>{"sip:bob@192.0.2.8"});

    w = write(base_config(), r, {binding("sip:bob@192.0.2.7:5070", 1000)});
    CHECK(w.res.status == 404);
    CHECK(w.parsed->code() == 404);
    // The host compares without case (RFC 3261 §19.1.4).
    Req h = make("INVITE", "sip:bob@Host.Example.com");
    w = write(base_config(), h, {binding("sip:bob@host.example.com", 1000)});
    CHECK(w.res.status == 404);
    // The user part compares exactly but after un-escaping: %62ob is bob (a loop), Bob is not.
    w = write(base_config(), r, {binding("sip:%62ob@192.0.2.7:5070", 1000)});
    CHECK(w.res.status == 404);
    w = write(base_config(), r, {binding("sip:Bob@192.0.2.7:5070", 1000)});
    CHECK(w.res.status == 302);
}

TEST_CASE("write_redirect: no binding gets 404 Not Found") {
    Written w = write({});
    CHECK(w.res.status == 404);
    CHECK(w.res.contacts == 0);
    REQUIRE(w.parsed->status == sip::ParseStatus::Ok);
    CHECK(w.parsed->code() == 404);
    CHECK(w.parsed->msg->reason == "Not Found");
    CHECK(w.parsed->contacts.empty());
}

TEST_CASE("write_redirect: a store error gets 503 with Retry-After, never 404") {
    for (StoreError e : {StoreError::Unavailable, StoreError::Timeout, StoreError::Overloaded,
                         StoreError::Protocol}) {
        CAPTURE(static_cast<int>(e));
        Written w = write(base_config(), Req{}, {binding("sip:bob@192.0.2.1")}, e);
        CHECK(w.res.status == 503);
        REQUIRE(w.parsed->status == sip::ParseStatus::Ok);
        CHECK(w.parsed->code() == 503);
        CHECK(!w.parsed->header("Retry-After").empty());
        CHECK(w.parsed->contacts.empty());
        // No bindings and an error: still 503.
        CHECK(write(base_config(), Req{}, {}, e).res.status == 503);
    }
}

TEST_CASE("write_redirect: Retry-After says the configured seconds") {
    Config c = base_config();
    c.retry_after_s = 17;
    Written w = write(c, Req{}, {}, StoreError::Timeout);
    CHECK(w.res.status == 503);
    CHECK(w.parsed->header("Retry-After") == "17");
}

TEST_CASE("write_redirect: Path becomes ?Route= only with path_as_route, escaped") {
    Binding b = binding("sip:bob@192.0.2.1");
    b.path = "<sip:edge.example.com;lr>";
    Binding with_headers = binding("sip:carol@192.0.2.2;transport=tcp?X-Foo=1", 500);
    with_headers.path = "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>";
    Binding no_path = binding("sip:dave@192.0.2.3", 100);

    Written off = write({b, with_headers, no_path});
    std::vector<std::string> lines = off.parsed->headers(sip::HeaderId::Contact);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == "<sip:bob@192.0.2.1>;q=1;expires=3600");
    CHECK(!contains(off.res.response, "Route"));

    Config c = base_config();
    c.path_as_route = true;
    Written on = write(c, Req{}, {b, with_headers, no_path});
    lines = on.parsed->headers(sip::HeaderId::Contact);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == "<sip:bob@192.0.2.1?Route=%3Csip:edge.example.com%3Blr%3E>;q=1;expires=3600");
    CHECK(lines[1] ==
          "<sip:carol@192.0.2.2;transport=tcp?X-Foo=1&Route=%3Csip:p1.example.com%3Blr%3E%2C%20"
          "%3Csip:p2.example.com%3Blr%3E>;q=0.5;expires=3600");
    CHECK(lines[2] == "<sip:dave@192.0.2.3>;q=0.1;expires=3600");
    // The Contacts still parse as URIs with headers.
    REQUIRE(on.parsed->contacts.size() == 3);
    CHECK(on.parsed->contacts[0].addr.uri_status == sip::UriStatus::Ok);
    CHECK(on.parsed->contacts[0].addr.uri.headers == "Route=%3Csip:edge.example.com%3Blr%3E");
}

TEST_CASE("write_redirect: a tel: contact gets no ?Route= (a tel URI has no headers)") {
    // Found by fuzz_redirect: "<tel:+15551234567?Route=...>" is not a URI, so the 302 was
    // unparsable for the caller.
    Binding tel = binding("tel:+15551234567");
    tel.path = "<sip:edge.example.com;lr>";
    Binding sips = binding("SIPS:bob@192.0.2.1", 500);
    sips.path = "<sip:edge.example.com;lr>";
    Config c = base_config();
    c.path_as_route = true;
    Written on = write(c, Req{}, {tel, sips});
    std::vector<std::string> lines = on.parsed->headers(sip::HeaderId::Contact);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "<tel:+15551234567>;q=1;expires=3600");
    CHECK(lines[1] ==
          "<SIPS:bob@192.0.2.1?Route=%3Csip:edge.example.com%3Blr%3E>;q=0.5;expires=3600");
    REQUIRE(on.parsed->contacts.size() == 2);
    for (const auto& contact : on.parsed->contacts)
        CHECK(contact.addr.uri_status == sip::UriStatus::Ok);
}

TEST_CASE("append_uri_header_escaped: hvalue characters stay, the rest become %XX") {
    std::array<char, 128> buf{};
    base::BufferWriter w(buf);
    CHECK(redirect::append_uri_header_escaped(w, "<sip:a.b;lr>, \"x\"&=%?/:+$[]~*'()!-_"));
    CHECK(w.view() == "%3Csip:a.b%3Blr%3E%2C%20%22x%22%26%3D%25?/:+$[]~*'()!-_");

    std::array<char, 4> small{};
    base::BufferWriter s(small);
    CHECK_FALSE(redirect::append_uri_header_escaped(s, "<<<"));
    CHECK(s.overflow());
}

TEST_CASE("write_redirect: the 1300-byte cap cuts the lowest q first and reports it") {
    std::vector<Binding> bs;
    for (int i = 0; i < 30; ++i) {
        // q 970, 940, ... in a shuffled storage order.
        int k = (i * 7) % 30;
        bs.push_back(binding("sip:user-with-a-rather-long-name-" + std::to_string(k) + "@host-" +
                                 std::to_string(k) + ".example.com;transport=udp",
                             static_cast<uint16_t>(1000 - 30 * (k + 1))));
    }
    Written w = write(base_config(), Req{}, bs, StoreError::None, 1300);
    CHECK(w.res.status == 302);
    CHECK(w.res.response.size() <= 1300);
    CHECK(w.res.contacts > 0);
    CHECK(w.res.cut > 0);
    CHECK(w.res.contacts + w.res.cut == 30);
    REQUIRE(w.parsed->status == sip::ParseStatus::Ok);
    REQUIRE(w.parsed->contacts.size() == w.res.contacts);
    // The ones kept are exactly the highest q ones, in order.
    for (std::size_t i = 0; i < w.parsed->contacts.size(); ++i) {
        CAPTURE(i);
        CHECK(w.parsed->contacts[i].q == static_cast<uint16_t>(1000 - 30 * (i + 1)));
    }
    // A larger limit keeps them all.
    Written all = write(base_config(), Req{}, bs, StoreError::None, 8192);
    CHECK(all.res.contacts == 30);
    CHECK(all.res.cut == 0);
    // The limit holds for every size.
    for (std::size_t limit = 600; limit <= 1400; limit += 37) {
        CAPTURE(limit);
        Written l = write(base_config(), Req{}, bs, StoreError::None, limit);
        CHECK(l.res.response.size() <= limit);
        if (l.res.status == 302) CHECK(l.res.contacts + l.res.cut == 30);
    }
}

TEST_CASE("write_redirect: a contact too large for any datagram never gives an empty 302") {
    Written w =
        write(base_config(), Req{}, {binding("sip:" + std::string(1400, 'x') + "@192.0.2.1")},
              StoreError::None, 1300);
    CHECK(w.res.status != 302);
    CHECK(w.res.contacts == 0);
    CHECK(w.res.response.size() <= 1300);
    CHECK(!w.res.response.empty());
}

TEST_CASE("write_redirect: the response copies Vias, From, Call-ID, CSeq and tags To") {
    Req r;
    r.via = "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds";
    r.extra.push_back("Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1");
    Written w = write(base_config(), r, {binding("sip:bob@192.0.2.1")});
    REQUIRE(w.parsed->status == sip::ParseStatus::Ok);
    std::vector<std::string> vias = w.parsed->headers(sip::HeaderId::Via);
    REQUIRE(vias.size() == 2);
    CHECK(vias[0] == "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;received=192.0.2.10");
    CHECK(vias[1] == "SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1");
    CHECK(w.parsed->header("From") == r.from);
    CHECK(w.parsed->header("Call-ID") == r.call_id);
    CHECK(w.parsed->header("CSeq") == "314159 INVITE");
    std::string to = w.parsed->header("To");
    REQUIRE(to.size() == r.to.size() + 5 + sip::kToTagLength);
    CHECK(to.substr(0, r.to.size() + 5) == r.to + ";tag=");
    CHECK(w.parsed->header("Content-Length") == "0");
}

TEST_CASE("write_redirect: the To-tag is deterministic per request") {
    std::vector<Binding> bs{binding("sip:bob@192.0.2.1"), binding("sip:bob@192.0.2.2", 500)};
    Written a = write(base_config(), Req{}, bs);
    Written b = write(base_config(), Req{}, bs);
    REQUIRE(!a.res.response.empty());
    CHECK(a.parsed->text == b.parsed->text);  // byte-identical retransmission answer

    Req other;
    other.call_id = "another-call-id@pc33.atlanta.com";
    Written c = write(base_config(), other, bs);
    CHECK(a.parsed->header("To") != c.parsed->header("To"));
    // The From tag and the top Via branch are part of the hash too.
    Req from_tag;
    from_tag.from = "Alice <sip:alice@atlanta.com>;tag=other";
    CHECK(write(base_config(), from_tag, bs).parsed->header("To") != a.parsed->header("To"));
    Req branch;
    branch.via = "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKanother";
    CHECK(write(base_config(), branch, bs).parsed->header("To") != a.parsed->header("To"));
    // A 404 and a 503 to the same request carry the same tag as the 302.
    CHECK(write(base_config(), Req{}, {}).parsed->header("To") == a.parsed->header("To"));
    CHECK(write(base_config(), Req{}, bs, StoreError::Timeout).parsed->header("To") ==
          a.parsed->header("To"));

    // Another instance with the same secret gives the same tag; another secret another tag.
    Config same = base_config();
    Config diff = base_config();
    diff.tag_key = base::derive_sip_key("some other secret");
    CHECK(write(same, Req{}, bs).parsed->text == a.parsed->text);
    CHECK(write(diff, Req{}, bs).parsed->header("To") != a.parsed->header("To"));

    // A To that already has a tag keeps it.
    Req tagged;
    tagged.to = "Bob <sip:bob@example.com>;tag=abc";
    CHECK(write(base_config(), tagged, bs).parsed->header("To") == tagged.to);
}

TEST_CASE("write_redirect: every response parses back") {
    std::vector<std::vector<Binding>> sets{
        {}, {binding("sip:bob@192.0.2.1")}, {binding("sip:bob@[2001:db8::1]:5070", 250)}};
    for (const auto& bs : sets) {
        for (StoreError e : {StoreError::None, StoreError::Timeout}) {
            Written w = write(base_config(), Req{}, bs, e);
            REQUIRE(!w.res.response.empty());
            CHECK(w.parsed->status == sip::ParseStatus::Ok);
            CHECK_FALSE(w.parsed->msg->is_request);
            CHECK(w.parsed->code() == w.res.status);
            CHECK(w.res.response.substr(w.res.response.size() - 4) == "\r\n\r\n");
        }
    }
}

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
    for (std::size_t m = 0; m < base::ServiceStats::kMethods; ++m)
        CHECK(rig.stats.requests[m].get() == 0);
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

TEST_SUITE_END();
