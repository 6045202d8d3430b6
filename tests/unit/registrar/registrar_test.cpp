// The REGISTER service of DESIGN §5 (RFC 3261 §10.3) against a fake RegisterStore that applies
// each REGISTER with the C++ model of src/location/register.lua (support/register_model.h, checked
// against the real script in tests/unit/location/register_script_test.cpp, which also owns the
// store's own rules: eviction order, retransmission, pruning), a fake Sender and a fake clock.
// Authentication is seen here only through its seam (an Authenticator returning a verdict, at once
// or later); digest authentication itself is in digest_auth_test.cpp.
#include "sipr/registrar/registrar.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include "support/fake_sender.h"
#include "support/parsed_response.h"
#include "support/peer.h"
#include "support/register_model.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/location/binding.h"
#include "sipr/sip/headers.h"
#include "sipr/sip/message.h"
#include "sipr/sip/uri.h"

namespace {

using namespace sipr;
using location::BindingView;
using location::RegisterChanges;
using location::StoreError;
using registrar::Authenticator;

constexpr int64_t kNow = 1'700'000'000'000;  // the fake Redis TIME, unix ms
const base::SipKey kKey = base::derive_sip_key("registrar unit tests");

// ---------------------------------------------------------------------------------------------
// Requests

struct Reg {
    std::string method = "REGISTER";
    std::string uri = "sip:example.com";
    std::string via = "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKnashds7";
    std::string to = "Alice <sip:alice@example.com>";
    std::string from = "Alice <sip:alice@example.com>;tag=456248";
    std::string call_id = "843817637684230@998sdasdh09";
    uint32_t cseq = 1826;
    std::vector<std::string> contacts;  // Contact header values
    std::string expires;                // Expires header value; "" leaves it out
    std::vector<std::string> extra;     // whole header lines without CRLF

    [[nodiscard]] std::string text() const {
        std::string t = method + " " + uri + " SIP/2.0\r\n";
        t += "Via: " + via + "\r\n";
        t += "Max-Forwards: 70\r\n";
        t += "To: " + to + "\r\n";
        t += "From: " + from + "\r\n";
        t += "Call-ID: " + call_id + "\r\n";
        t += "CSeq: " + std::to_string(cseq) + " " + method + "\r\n";
        for (const std::string& c : contacts) t += "Contact: " + c + "\r\n";
        if (!expires.empty()) t += "Expires: " + expires + "\r\n";
        for (const std::string& e : extra) t += e + "\r\n";
        t += "Content-Length: 0\r\n\r\n";
        return t;
    }
};

Reg reg(std::vector<std::string> contacts, std::string expires = {}) {
    Reg r;
    r.contacts = std::move(contacts);
    r.expires = std::move(expires);
    return r;
}

// ---------------------------------------------------------------------------------------------
// Responses

using Parsed = test::ParsedResponse;

// Parsed back; the registrar's answers always parse, Contacts included.
std::unique_ptr<Parsed> parse_response(std::string_view text) {
    auto p = test::parse_response(text);
    REQUIRE(p->status == sip::ParseStatus::Ok);
    REQUIRE(p->bad_contacts == 0);
    return p;
}

// ---------------------------------------------------------------------------------------------
// Fakes

using test::make_peer;

using test::FakeSender;

FakeSender strict_sender() {
    FakeSender s;
    s.strict_contacts = true;
    return s;
}

// register.lua's model (register_model.h): one hash of packed bindings per AOR, Redis TIME =
// now_ms.
class FakeStore final : public location::RegisterStore {
  public:
    int64_t now_ms = kNow;
    bool up = true;
    StoreError refuse = StoreError::None;           // returned at the call (no callback)
    StoreError fail_with = StoreError::None;        // given to the callback, nothing applied
    std::map<std::string, test::RegisterTable> db;  // aor -> field -> packed
    std::vector<RegisterChanges> seen;

    StoreError apply_register(const RegisterChanges& changes, location::RegisterCallback cb,
                              void* ctx) noexcept override {
        seen.push_back(changes);
        if (refuse != StoreError::None) return refuse;
        pending_.push_back(Pending{changes, cb, ctx});
        return StoreError::None;
    }
    [[nodiscard]] bool available() const noexcept override { return up; }

    [[nodiscard]] std::size_t pending() const { return pending_.size(); }

    // Runs every pending script in order, answering each.
    void run() {
        while (!pending_.empty()) {
            Pending p = pending_.front();
            pending_.erase(pending_.begin());
            location::RegisterReply reply;
            reply.now_ms = now_ms;
            test::RegisterTable after;
            std::vector<std::string> packed;
            std::vector<BindingView> views;
            reply.error =
                fail_with != StoreError::None
                    ? fail_with
                    : test::apply_register_model(db[p.changes.aor], p.changes, now_ms, after);
            if (reply.error == StoreError::None) {
                for (const auto& kv : after) packed.push_back(kv.second);
                views.resize(packed.size());
                for (std::size_t i = 0; i < packed.size(); ++i)
                    REQUIRE(location::unpack_binding(packed[i], views[i]));
                reply.bindings = views;
            }
            p.cb(p.ctx, reply);
            for (std::string& s : packed) std::fill(s.begin(), s.end(), '#');
        }
    }

    // The stored binding of `aor` under `field`.
    [[nodiscard]] bool find(const std::string& aor, const std::string& field,
                            BindingView& out) const {
        auto a = db.find(aor);
        if (a == db.end()) return false;
        auto f = a->second.find(field);
        if (f == a->second.end()) return false;
        return location::unpack_binding(f->second, out);
    }
    [[nodiscard]] std::size_t count(const std::string& aor) const {
        auto a = db.find(aor);
        return a == db.end() ? 0 : a->second.size();
    }

  private:
    struct Pending {
        RegisterChanges changes;
        location::RegisterCallback cb = nullptr;
        void* ctx = nullptr;
    };
    std::vector<Pending> pending_;
};

// An Authenticator that answers what the test says, at once or later (Pending, then resume()).
class FakeAuth final : public Authenticator {
  public:
    Verdict verdict = Verdict::Allow;
    bool defer = false;  // answer Pending, and `verdict` on resume()
    int calls = 0;
    std::string aor;
    std::string method;  // of the message it was given, read when it answers (slot still valid)

    Verdict check(const sip::Message& msg, const sip::RequestCore&, std::string_view,
                  const sip::Peer&, std::string_view a, std::string& extra_headers, Done done,
                  void* ctx) noexcept override {
        ++calls;
        aor.assign(a);
        msg_ = &msg;
        extra_ = &extra_headers;
        if (defer) {
            done_ = done;
            ctx_ = ctx;
            return Verdict::Pending;
        }
        fill();
        return verdict;
    }
    // Delivers the deferred verdict.
    void resume() {
        const bool armed = done_ != nullptr;
        REQUIRE(armed);
        fill();
        Done d = done_;
        done_ = nullptr;
        d(ctx_, verdict);
    }

  private:
    void fill() {
        method.assign(msg_->method_name);
        extra_->clear();
        if (verdict == Verdict::Challenge || verdict == Verdict::Reject)
            *extra_ =
                "WWW-Authenticate: Digest realm=\"example.com\", nonce=\"n1\", "
                "algorithm=SHA-256, qop=\"auth\"\r\n"
                "WWW-Authenticate: Digest realm=\"example.com\", nonce=\"n1\", algorithm=MD5, "
                "qop=\"auth\"\r\n";
    }
    const sip::Message* msg_ = nullptr;
    std::string* extra_ = nullptr;
    Done done_ = nullptr;
    void* ctx_ = nullptr;
};

registrar::Config base_config() {
    registrar::Config c;
    c.tag_key = kKey;
    c.min_expires = 60;
    c.max_expires = 3600;
    c.default_expires = 1800;
    c.max_contacts = 10;
    c.retry_after_s = 7;
    return c;
}

constexpr std::string_view kAor = "sip:alice@example.com";

struct Rig {
    FakeStore store;
    FakeSender sender = strict_sender();
    sip::MessageStats messages;
    registrar::RegistrarStats stats;
    sip::Peer peer = make_peer("192.0.2.10", 5062);
    std::unique_ptr<registrar::Registrar> r;

    explicit Rig(registrar::Config c = base_config()) {
        r = std::make_unique<registrar::Registrar>(std::move(c), store, sender, messages, stats);
    }
    // Sends one request and lets the store answer; returns the response (nullptr when none).
    std::unique_ptr<Parsed> send(const Reg& req) {
        std::size_t before = sender.sent.size();
        std::string bytes = req.text();
        r->on_datagram(bytes, peer);
        std::fill(bytes.begin(), bytes.end(), 'X');  // the datagram buffer dies with the callback
        store.run();
        if (sender.sent.size() == before) return nullptr;
        REQUIRE(sender.sent.size() == before + 1);
        return sender.last();
    }
    [[nodiscard]] BindingView binding(const std::string& field) const {
        BindingView b;
        REQUIRE(store.find(std::string(kAor), field, b));
        return b;
    }
    [[nodiscard]] std::size_t bindings() const { return store.count(std::string(kAor)); }
    [[nodiscard]] uint64_t registrations(registrar::RegistrationResult k) const {
        return stats.registrations[static_cast<std::size_t>(k)].get();
    }
};

}  // namespace

TEST_SUITE_BEGIN("registrar");

// =============================================================================================
// Helpers of registrar.h

TEST_CASE("format_q: thousandths as the shortest decimal") {
    CHECK(registrar::format_q(1000) == "1");
    CHECK(registrar::format_q(1001) == "1");
    CHECK(registrar::format_q(999) == "0.999");
    CHECK(registrar::format_q(500) == "0.5");
    CHECK(registrar::format_q(123) == "0.123");
    CHECK(registrar::format_q(100) == "0.1");
    CHECK(registrar::format_q(10) == "0.01");
    CHECK(registrar::format_q(5) == "0.005");
    CHECK(registrar::format_q(0) == "0");
}

TEST_CASE("format_sip_date: RFC 1123 date in GMT") {
    CHECK(registrar::format_sip_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
    CHECK(registrar::format_sip_date(1'289'690'940'000) == "Sat, 13 Nov 2010 23:29:00 GMT");
    CHECK(registrar::format_sip_date(1'289'690'940'999) == "Sat, 13 Nov 2010 23:29:00 GMT");
    CHECK(registrar::format_sip_date(951'782'400'000) == "Tue, 29 Feb 2000 00:00:00 GMT");
}

TEST_CASE("contact_key: scheme and host lower-cased, the rest as written") {
    auto key = [](std::string_view text) {
        sip::Uri u;
        REQUIRE(sip::parse_uri(text, u) == sip::UriStatus::Ok);
        return registrar::contact_key(u, text);
    };
    CHECK(key("SIP:Alice@Host.EXAMPLE.com:5060;Transport=UDP") ==
          "sip:Alice@host.example.com:5060;Transport=UDP");
    CHECK(key("sip:bob@192.0.2.4") == "sip:bob@192.0.2.4");
    CHECK(key("SIPS:Bob@[2001:DB8::1]:5061") == "sips:Bob@[2001:db8::1]:5061");
    CHECK(key("sip:Host.Example.COM") == "sip:host.example.com");
    // The user part is not a host, even when it looks like the host.
    CHECK(key("sip:EXAMPLE@EXAMPLE.com") == "sip:EXAMPLE@example.com");
}

// =============================================================================================
// REGISTER

TEST_CASE("REGISTER: one contact is stored and listed in the 200 with expires and Date") {
    Rig rig;
    Reg req = reg({"<sip:alice@192.0.2.10:5062>"});
    req.extra.push_back("User-Agent: softphone/1.0");
    auto p = rig.send(req);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(rig.sender.sent.back().port == 5062);  // the Via's sent-by port
    REQUIRE(p->contacts.size() == 1);
    CHECK(p->contacts[0].addr.uri_text == "sip:alice@192.0.2.10:5062");
    CHECK(p->contacts[0].expires == 1800);  // the default
    CHECK(p->header("Date") == registrar::format_sip_date(kNow));
    CHECK(p->header("Call-ID") == req.call_id);
    CHECK(p->header("CSeq") == "1826 REGISTER");
    CHECK(p->header("To").find(";tag=") != std::string::npos);

    REQUIRE(rig.store.seen.size() == 1);
    const RegisterChanges& ch = rig.store.seen[0];
    CHECK(ch.aor == kAor);
    CHECK(ch.call_id == req.call_id);
    CHECK(ch.cseq == 1826);
    CHECK_FALSE(ch.remove_all);
    CHECK(ch.max_contacts == 10);
    CHECK_FALSE(ch.evict_oldest);
    REQUIRE(ch.contacts.size() == 1);
    CHECK(ch.contacts[0].key == "sip:alice@192.0.2.10:5062");
    CHECK(ch.contacts[0].expires_s == 1800);

    BindingView b = rig.binding("sip:alice@192.0.2.10:5062");
    CHECK(b.contact == "sip:alice@192.0.2.10:5062");
    CHECK(b.expires_at_ms == kNow + 1'800'000);
    CHECK(b.call_id == req.call_id);
    CHECK(b.cseq == 1826);
    CHECK(b.q == 1000);
    CHECK(b.received == "192.0.2.10:5062");
    CHECK(b.user_agent == "softphone/1.0");
    CHECK(b.path.empty());
    CHECK(b.instance.empty());
    CHECK_FALSE(b.has_reg_id);

    CHECK(rig.registrations(registrar::RegistrationResult::Ok) == 1);
    CHECK(rig.messages.responses[200].get() == 1);
    CHECK(rig.messages.requests[static_cast<std::size_t>(sip::Method::Register)].get() == 1);
    CHECK(rig.r->pending() == 0);
}

TEST_CASE("REGISTER: waits for the store, from a copy of the datagram") {
    Rig rig;
    Reg req = reg({"<sip:alice@192.0.2.10:5062>"});
    std::string bytes = req.text();
    rig.r->on_datagram(bytes, rig.peer);
    CHECK(rig.r->pending() == 1);
    CHECK(rig.sender.sent.empty());
    std::fill(bytes.begin(), bytes.end(), '\0');
    rig.store.run();
    CHECK(rig.r->pending() == 0);
    auto p = rig.sender.last();
    CHECK(p->code() == 200);
    CHECK(p->header("Call-ID") == req.call_id);
    REQUIRE(p->contacts.size() == 1);
    CHECK(p->contacts[0].addr.uri_text == "sip:alice@192.0.2.10:5062");
}

TEST_CASE("REGISTER: Request-URI of a domain not served -> 404; To of another -> 403") {
    registrar::Config c = base_config();
    c.domains = {"example.com"};
    Rig rig(c);
    Reg other = reg({"<sip:alice@192.0.2.10>"});
    other.uri = "sip:example.org";
    auto p = rig.send(other);
    REQUIRE(p);
    CHECK(p->code() == 404);

    Reg foreign_to = reg({"<sip:alice@192.0.2.10>"});
    foreign_to.to = "<sip:alice@example.org>";
    p = rig.send(foreign_to);
    REQUIRE(p);
    CHECK(p->code() == 403);

    Reg tel = reg({"<sip:alice@192.0.2.10>"});
    tel.uri = "tel:+15550100";
    p = rig.send(tel);
    REQUIRE(p);
    CHECK(p->code() == 404);

    CHECK(rig.store.seen.empty());
    CHECK(rig.registrations(registrar::RegistrationResult::Refused) == 3);

    // The served domain, in any case, is accepted.
    Reg ok = reg({"<sip:alice@192.0.2.10>"});
    ok.uri = "sip:EXAMPLE.com";
    ok.to = "<sip:alice@Example.COM>";
    p = rig.send(ok);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(rig.store.seen.back().aor == kAor);
}

TEST_CASE("REGISTER: an escaped '@' in the To user part does not confuse the domain check") {
    registrar::Config c = base_config();
    c.domains = {"example.com"};
    Rig rig(c);
    Reg r = reg({"<sip:alice@192.0.2.10>"});
    r.to = "<sip:a%40b@example.com>";  // user "a@b" in example.com
    auto p = rig.send(r);
    REQUIRE(p);
    CHECK(p->code() == 200);
}

TEST_CASE("REGISTER: Require with an unknown option -> 420 + Unsupported") {
    Rig rig;
    Reg r = reg({"<sip:alice@192.0.2.10>"});
    r.extra.push_back("Require: foo");
    auto p = rig.send(r);
    REQUIRE(p);
    CHECK(p->code() == 420);
    CHECK(p->headers("Unsupported") == std::vector<std::string>{"foo"});

    r.extra = {"Require: path, foo, bar"};
    p = rig.send(r);
    REQUIRE(p);
    CHECK(p->code() == 420);
    CHECK(p->headers("Unsupported") == std::vector<std::string>{"foo", "bar"});
    CHECK(rig.store.seen.empty());

    r.extra = {"Require: path", "Supported: path"};
    p = rig.send(r);
    REQUIRE(p);
    CHECK(p->code() == 200);
}

TEST_CASE("REGISTER: Contact * with Expires: 0 removes every binding") {
    Rig rig;
    REQUIRE(rig.send(reg({"<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"}))->code() == 200);
    CHECK(rig.bindings() == 2);
    Reg star = reg({"*"}, "0");
    star.cseq = 1827;
    auto p = rig.send(star);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(p->contacts.empty());
    CHECK(rig.bindings() == 0);
    CHECK(rig.store.seen.back().remove_all);
    CHECK(rig.store.seen.back().contacts.empty());
    CHECK(rig.registrations(registrar::RegistrationResult::Removed) == 1);
}

TEST_CASE("REGISTER: Contact * otherwise -> 400") {
    Rig rig;
    struct Case {
        const char* name;
        Reg req;
    };
    Case cases[] = {
        {"* with Expires: 3600", reg({"*"}, "3600")},
        {"* without Expires", reg({"*"})},
        {"* with another contact", reg({"*", "<sip:alice@192.0.2.10>"}, "0")},
        {"* after another contact", reg({"<sip:alice@192.0.2.10>", "*"}, "0")},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        auto p = rig.send(c.req);
        REQUIRE(p);
        CHECK(p->code() == 400);
    }
    CHECK(rig.store.seen.empty());
}

TEST_CASE("REGISTER: each contact's expiry - its parameter, else Expires, else the default") {
    Rig rig;
    Reg r = reg({"<sip:a@192.0.2.1>;expires=120", "<sip:b@192.0.2.2>"}, "300");
    auto p = rig.send(r);
    REQUIRE(p);
    CHECK(p->code() == 200);
    REQUIRE(rig.store.seen.size() == 1);
    REQUIRE(rig.store.seen[0].contacts.size() == 2);
    CHECK(rig.store.seen[0].contacts[0].expires_s == 120);
    CHECK(rig.store.seen[0].contacts[1].expires_s == 300);
    REQUIRE(p->contact("sip:a@192.0.2.1") != nullptr);
    REQUIRE(p->contact("sip:b@192.0.2.2") != nullptr);
    CHECK(p->contact("sip:a@192.0.2.1")->expires == 120);
    CHECK(p->contact("sip:b@192.0.2.2")->expires == 300);

    Reg d = reg({"<sip:c@192.0.2.3>"});
    d.call_id = "other-call";
    p = rig.send(d);
    REQUIRE(p);
    CHECK(rig.store.seen.back().contacts[0].expires_s == 1800);
    CHECK(p->contact("sip:c@192.0.2.3")->expires == 1800);
}

TEST_CASE("REGISTER: below --min-expires -> 423 + Min-Expires, nothing stored") {
    Rig rig;
    for (Reg r : {reg({"<sip:a@192.0.2.1>;expires=59"}), reg({"<sip:a@192.0.2.1>"}, "30"),
                  reg({"<sip:ok@192.0.2.2>", "<sip:a@192.0.2.1>;expires=1"})}) {
        auto p = rig.send(r);
        REQUIRE(p);
        CHECK(p->code() == 423);
        CHECK(p->header("Min-Expires") == "60");
    }
    CHECK(rig.store.seen.empty());
    CHECK(rig.bindings() == 0);
    // Exactly the minimum is fine.
    auto p = rig.send(reg({"<sip:a@192.0.2.1>;expires=60"}));
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(p->contacts[0].expires == 60);
}

TEST_CASE("REGISTER: above --max-expires is clamped") {
    Rig rig;
    auto p = rig.send(reg({"<sip:a@192.0.2.1>;expires=7200", "<sip:b@192.0.2.2>"}, "86400"));
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(rig.store.seen[0].contacts[0].expires_s == 3600);
    CHECK(rig.store.seen[0].contacts[1].expires_s == 3600);
    CHECK(p->contact("sip:a@192.0.2.1")->expires == 3600);
    CHECK(p->contact("sip:b@192.0.2.2")->expires == 3600);
    CHECK(rig.binding("sip:a@192.0.2.1").expires_at_ms == kNow + 3'600'000);
}

TEST_CASE("REGISTER: expires 0 removes that binding only") {
    Rig rig;
    REQUIRE(rig.send(reg({"<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>"}))->code() == 200);
    Reg rm = reg({"<sip:a@192.0.2.1>;expires=0"});
    rm.cseq = 1827;
    auto p = rig.send(rm);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(rig.store.seen.back().contacts[0].expires_s == 0);
    CHECK(rig.bindings() == 1);
    CHECK(p->contact("sip:a@192.0.2.1") == nullptr);
    CHECK(p->contact("sip:b@192.0.2.2") != nullptr);
    CHECK(rig.registrations(registrar::RegistrationResult::Removed) == 1);

    // Expires: 0 as the header does the same.
    Reg rm2 = reg({"<sip:b@192.0.2.2>"}, "0");
    rm2.cseq = 1828;
    p = rig.send(rm2);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(rig.bindings() == 0);
}

TEST_CASE("REGISTER: same Call-ID with a lower CSeq -> 500 + Retry-After, nothing changed") {
    Rig rig;
    Reg first = reg({"<sip:a@192.0.2.1>"}, "600");
    first.cseq = 5;
    REQUIRE(rig.send(first)->code() == 200);

    rig.store.now_ms += 10'000;
    Reg older = reg({"<sip:a@192.0.2.1>"}, "1200");
    older.cseq = 4;
    auto p = rig.send(older);
    REQUIRE(p);
    CHECK(p->code() == 500);
    CHECK(p->header("Retry-After") == "7");
    BindingView b = rig.binding("sip:a@192.0.2.1");
    CHECK(b.cseq == 5);
    CHECK(b.expires_at_ms == kNow + 600'000);
    CHECK(rig.registrations(registrar::RegistrationResult::Stale) == 1);

    // Another Call-ID with a lower CSeq is another UA: the binding is updated.
    Reg other = reg({"<sip:a@192.0.2.1>"}, "1200");
    other.call_id = "another-call-id";
    other.cseq = 1;
    p = rig.send(other);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(rig.binding("sip:a@192.0.2.1").cseq == 1);
    CHECK(rig.binding("sip:a@192.0.2.1").expires_at_ms == rig.store.now_ms + 1'200'000);
}

TEST_CASE("REGISTER: Contact * with a stale CSeq -> 500, nothing removed") {
    Rig rig;
    Reg first = reg({"<sip:a@192.0.2.1>"});
    first.cseq = 10;
    REQUIRE(rig.send(first)->code() == 200);
    Reg star = reg({"*"}, "0");
    star.cseq = 9;
    auto p = rig.send(star);
    REQUIRE(p);
    CHECK(p->code() == 500);
    CHECK(rig.bindings() == 1);
}

TEST_CASE("REGISTER: beyond max_pending -> 503 at once") {
    registrar::Config c = base_config();
    c.max_pending = 2;
    Rig rig(c);
    for (int i = 0; i < 3; ++i) {
        Reg r = reg({"<sip:a" + std::to_string(i) + "@192.0.2.1>"});
        r.call_id = "pending-" + std::to_string(i);
        rig.r->on_datagram(r.text(), rig.peer);
    }
    CHECK(rig.r->pending() == 2);
    CHECK(rig.store.seen.size() == 2);
    REQUIRE(rig.sender.sent.size() == 1);
    CHECK(rig.sender.last()->code() == 503);
    CHECK(rig.sender.last()->header("Call-ID") == "pending-2");
    rig.store.run();
    CHECK(rig.r->pending() == 0);
    REQUIRE(rig.sender.sent.size() == 3);
    CHECK(parse_response(rig.sender.sent[1].bytes)->header("Call-ID") == "pending-0");
    CHECK(parse_response(rig.sender.sent[2].bytes)->header("Call-ID") == "pending-1");
    CHECK(rig.bindings() == 2);
}

TEST_CASE("REGISTER: a retransmission (same Call-ID and CSeq) gets 200 again") {
    // What the store does with it (leaves the binding as it is) is register.lua's, tested in
    // tests/unit/location/register_script_test.cpp; here: the registrar passes it on unchanged,
    // answers with the same tag and lists the binding's remaining time from the store's reply.
    Rig rig;
    Reg r = reg({"<sip:a@192.0.2.1>"}, "600");
    auto first = rig.send(r);
    REQUIRE(first);
    CHECK(first->code() == 200);
    rig.store.now_ms += 2'000;
    auto again = rig.send(r);
    REQUIRE(again);
    CHECK(again->code() == 200);
    CHECK(again->header("To") == first->header("To"));  // the same deterministic tag
    REQUIRE(rig.store.seen.size() == 2);
    CHECK(rig.store.seen[1].call_id == rig.store.seen[0].call_id);
    CHECK(rig.store.seen[1].cseq == rig.store.seen[0].cseq);
    CHECK_FALSE(rig.store.seen[1].retransmission);  // only an authenticator says so
    REQUIRE(again->contacts.size() == 1);
    CHECK(again->contacts[0].expires == 598);
    CHECK(rig.registrations(registrar::RegistrationResult::Ok) == 2);
    CHECK(rig.registrations(registrar::RegistrationResult::Stale) == 0);
}

TEST_CASE("REGISTER: a higher CSeq on the same Call-ID refreshes") {
    Rig rig;
    Reg r = reg({"<sip:a@192.0.2.1>"}, "600");
    REQUIRE(rig.send(r)->code() == 200);
    rig.store.now_ms += 100'000;
    r.cseq += 1;
    auto p = rig.send(r);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(p->contacts[0].expires == 600);
    CHECK(rig.binding("sip:a@192.0.2.1").updated_at_ms == kNow + 100'000);
}

TEST_CASE("REGISTER: Path stored and echoed only with Supported: path (RFC 3327)") {
    Rig rig;
    Reg with = reg({"<sip:a@192.0.2.1>"});
    with.extra = {"Supported: path", "Path: <sip:edge1.example.com;lr>",
                  "Path: <sip:edge2.example.com;lr>"};
    auto p = rig.send(with);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(rig.binding("sip:a@192.0.2.1").path ==
          "<sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>");
    CHECK(p->headers("Path") ==
          std::vector<std::string>{"<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"});
    bool supported_path = false;
    for (const std::string& s : p->headers("Supported")) supported_path |= s == "path";
    CHECK(supported_path);

    Reg without = reg({"<sip:b@192.0.2.2>"});
    without.call_id = "call-without-supported";
    without.extra = {"Path: <sip:edge1.example.com;lr>"};
    p = rig.send(without);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(rig.binding("sip:b@192.0.2.2").path.empty());
    CHECK(p->headers("Path").empty());
}

TEST_CASE("REGISTER: +sip.instance is the binding key; reg-id kept (RFC 5626)") {
    Rig rig;
    const std::string inst = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";
    Reg r =
        reg({"<sip:alice@192.0.2.10:5062;transport=udp>;+sip.instance=\"" + inst + "\";reg-id=1"});
    auto p = rig.send(r);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(rig.store.seen[0].contacts[0].key == inst);
    BindingView b = rig.binding(inst);
    CHECK(b.contact == "sip:alice@192.0.2.10:5062;transport=udp");
    CHECK(b.instance == inst);
    CHECK(b.has_reg_id);
    CHECK(b.reg_id == 1);
    REQUIRE(p->contacts.size() == 1);
    CHECK(p->contacts[0].instance == inst);
    CHECK(p->contacts[0].has_reg_id);
    CHECK(p->contacts[0].reg_id == 1);

    // The same instance from a new address replaces the binding (NAT rebinding).
    Reg moved = reg({"<sip:alice@198.51.100.7:6000>;+sip.instance=\"" + inst + "\";reg-id=1"});
    moved.cseq = r.cseq + 1;
    p = rig.send(moved);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(rig.bindings() == 1);
    CHECK(rig.binding(inst).contact == "sip:alice@198.51.100.7:6000");
    REQUIRE(p->contacts.size() == 1);
    CHECK(p->contacts[0].addr.uri_text == "sip:alice@198.51.100.7:6000");
}

TEST_CASE("REGISTER: contacts without instance are keyed by the normalised URI") {
    Rig rig;
    REQUIRE(rig.send(reg({"<SIP:alice@Host.Example.COM:5060;transport=udp>;q=0.5"}))->code() ==
            200);
    CHECK(rig.store.seen[0].contacts[0].key == "sip:alice@host.example.com:5060;transport=udp");
    // The same contact written in another case is the same binding.
    Reg again = reg({"<sip:alice@HOST.example.com:5060;transport=udp>"});
    again.cseq += 1;
    REQUIRE(rig.send(again)->code() == 200);
    CHECK(rig.bindings() == 1);
}

TEST_CASE("REGISTER: received is the source address and port") {
    Rig rig;
    REQUIRE(rig.send(reg({"<sip:a@10.0.0.5:5060>"}))->code() == 200);
    CHECK(rig.binding("sip:a@10.0.0.5:5060").received == "192.0.2.10:5062");

    Rig v6;
    v6.peer = make_peer("2001:db8::10", 5070);
    REQUIRE(v6.send(reg({"<sip:a@[2001:db8::10]:5070>"}))->code() == 200);
    CHECK(v6.binding("sip:a@[2001:db8::10]:5070").received == "[2001:db8::10]:5070");
}

TEST_CASE("REGISTER: --max-contacts with policy reject -> 403, nothing changed") {
    registrar::Config c = base_config();
    c.max_contacts = 2;
    Rig rig(c);
    REQUIRE(rig.send(reg({"<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>"}))->code() == 200);
    Reg third = reg({"<sip:c@192.0.2.3>"});
    third.call_id = "third";
    auto p = rig.send(third);
    REQUIRE(p);
    CHECK(p->code() == 403);
    CHECK(rig.bindings() == 2);
    CHECK(rig.store.seen.back().max_contacts == 2);
    CHECK(rig.registrations(registrar::RegistrationResult::Refused) == 1);

    // Refreshing an existing one is not adding.
    Reg refresh = reg({"<sip:a@192.0.2.1>"});
    refresh.cseq += 1;
    CHECK(rig.send(refresh)->code() == 200);

    // Three at once are refused as well.
    Rig fresh(c);
    p = fresh.send(reg({"<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>", "<sip:c@192.0.2.3>"}));
    REQUIRE(p);
    CHECK(p->code() == 403);
    CHECK(fresh.bindings() == 0);
}

TEST_CASE("REGISTER: --max-contacts with policy evict reaches the store; the 200 lists its keep") {
    // Which binding goes is register.lua's choice, tested in
    // tests/unit/location/register_script_test.cpp.
    registrar::Config c = base_config();
    c.max_contacts = 2;
    c.evict_oldest = true;
    Rig rig(c);
    for (const char* who : {"a", "b", "c"}) {
        Reg r = reg({std::string("<sip:") + who + "@192.0.2.1>"});
        r.call_id = std::string("call-") + who;
        auto p = rig.send(r);
        REQUIRE(p);
        CHECK(p->code() == 200);
        CHECK(rig.store.seen.back().max_contacts == 2);
        CHECK(rig.store.seen.back().evict_oldest);
        rig.store.now_ms += 10'000;
    }
    CHECK(rig.bindings() == 2);
    auto p = rig.sender.last();
    REQUIRE(p->contacts.size() == 2);
    for (const sip::Contact& k : p->contacts) {
        BindingView b;
        CHECK(rig.store.find(std::string(kAor), std::string(k.addr.uri_text), b));
    }
}

TEST_CASE("REGISTER: the 200 lists every current binding with its remaining seconds") {
    Rig rig;
    Reg a = reg({"<sip:a@192.0.2.1>;q=0.4"}, "3600");
    a.call_id = "call-a";
    REQUIRE(rig.send(a)->code() == 200);
    rig.store.now_ms += 100'500;
    Reg b = reg({"<sip:b@192.0.2.2>"}, "600");
    b.call_id = "call-b";
    auto p = rig.send(b);
    REQUIRE(p);
    CHECK(p->code() == 200);
    REQUIRE(p->contacts.size() == 2);
    REQUIRE(p->contact("sip:a@192.0.2.1") != nullptr);
    CHECK(p->contact("sip:a@192.0.2.1")->expires == 3500);  // 3499.5 s rounded up
    CHECK(p->contact("sip:a@192.0.2.1")->q == 400);
    CHECK(p->contact("sip:b@192.0.2.2")->expires == 600);
    CHECK(p->header("Date") == registrar::format_sip_date(kNow + 100'500));

    // An expired binding is pruned and not listed.
    rig.store.now_ms += 600'000;
    Reg fetch = reg({});
    fetch.call_id = "call-fetch";
    p = rig.send(fetch);
    REQUIRE(p);
    CHECK(p->code() == 200);
    REQUIRE(p->contacts.size() == 1);
    CHECK(p->contacts[0].addr.uri_text == "sip:a@192.0.2.1");
    CHECK(rig.registrations(registrar::RegistrationResult::Fetch) == 1);
    CHECK(rig.store.seen.back().contacts.empty());
}

TEST_CASE("REGISTER: a malformed Expires or Contact -> 400") {
    Rig rig;
    auto p = rig.send(reg({"<sip:a@192.0.2.1>"}, "soon"));
    REQUIRE(p);
    CHECK(p->code() == 400);
    p = rig.send(reg({"<sip:a@192.0.2.1>;expires=never"}));
    REQUIRE(p);
    CHECK(p->code() == 400);
    p = rig.send(reg({"<sip:a@192.0.2.1"}));
    REQUIRE(p);
    CHECK(p->code() == 400);
    CHECK(rig.store.seen.empty());
}

TEST_CASE("REGISTER: store errors -> 503 + Retry-After") {
    SUBCASE("refused at the call") {
        Rig rig;
        rig.store.refuse = StoreError::Unavailable;
        auto p = rig.send(reg({"<sip:a@192.0.2.1>"}));
        REQUIRE(p);
        CHECK(p->code() == 503);
        CHECK(p->header("Retry-After") == "7");
        CHECK(rig.r->pending() == 0);
        CHECK(rig.registrations(registrar::RegistrationResult::StoreError) == 1);
        CHECK(rig.stats.redis_errors[static_cast<std::size_t>(base::RedisErrorKind::Unavailable)]
                  .get() == 1);
        // The slot came back.
        rig.store.refuse = StoreError::None;
        Reg again = reg({"<sip:a@192.0.2.1>"});
        again.cseq += 1;
        CHECK(rig.send(again)->code() == 200);
    }
    SUBCASE("timeout in the reply") {
        Rig rig;
        rig.store.fail_with = StoreError::Timeout;
        auto p = rig.send(reg({"<sip:a@192.0.2.1>"}));
        REQUIRE(p);
        CHECK(p->code() == 503);
        CHECK(p->header("Retry-After") == "7");
        CHECK(rig.registrations(registrar::RegistrationResult::StoreError) == 1);
        CHECK(
            rig.stats.redis_errors[static_cast<std::size_t>(base::RedisErrorKind::Timeout)].get() ==
            1);
    }
    SUBCASE("disconnected in the reply") {
        Rig rig;
        rig.store.fail_with = StoreError::Unavailable;
        auto p = rig.send(reg({"<sip:a@192.0.2.1>"}));
        REQUIRE(p);
        CHECK(p->code() == 503);
    }
}

TEST_CASE("REGISTER: an Authenticator's verdicts -> 401 / 403 / 503 / on to the store") {
    Rig rig;
    FakeAuth auth;
    rig.r->set_authenticator(&auth);

    // Challenge: a 401 with the authenticator's headers; not a failure (no credentials yet).
    auth.verdict = Authenticator::Verdict::Challenge;
    auto p = rig.send(reg({"<sip:a@192.0.2.1>"}));
    REQUIRE(p);
    CHECK(p->code() == 401);
    CHECK(p->headers("WWW-Authenticate").size() == 2);
    CHECK(auth.aor == kAor);
    CHECK(rig.stats.auth_failures.get() == 0);

    // Reject: a 401 too, counted as a failure.
    auth.verdict = Authenticator::Verdict::Reject;
    p = rig.send(reg({"<sip:a@192.0.2.1>"}));
    REQUIRE(p);
    CHECK(p->code() == 401);
    CHECK(p->headers("WWW-Authenticate").size() == 2);
    CHECK(rig.stats.auth_failures.get() == 1);

    auth.verdict = Authenticator::Verdict::Forbidden;
    p = rig.send(reg({"<sip:a@192.0.2.1>"}));
    REQUIRE(p);
    CHECK(p->code() == 403);
    CHECK(p->headers("WWW-Authenticate").empty());
    CHECK(rig.store.seen.empty());
    CHECK(rig.stats.auth_failures.get() == 2);

    auth.verdict = Authenticator::Verdict::Unavailable;
    p = rig.send(reg({"<sip:a@192.0.2.1>"}));
    REQUIRE(p);
    CHECK(p->code() == 503);
    CHECK(p->header("Retry-After") == "7");
    CHECK(rig.store.seen.empty());
    CHECK(rig.stats.auth_failures.get() == 2);
    CHECK(rig.registrations(registrar::RegistrationResult::Refused) == 3);

    auth.verdict = Authenticator::Verdict::Allow;
    p = rig.send(reg({"<sip:a@192.0.2.1>"}));
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(auth.calls == 5);
    CHECK(rig.stats.auth_failures.get() == 2);
}

TEST_CASE("REGISTER: a Pending authenticator keeps the REGISTER in its slot until it answers") {
    Rig rig;
    FakeAuth auth;
    auth.defer = true;
    rig.r->set_authenticator(&auth);

    auth.verdict = Authenticator::Verdict::Allow;
    std::string bytes = reg({"<sip:a@192.0.2.1>"}, "600").text();
    rig.r->on_datagram(bytes, rig.peer);
    std::fill(bytes.begin(), bytes.end(), 'X');  // the receive buffer is gone
    CHECK(rig.sender.sent.empty());
    CHECK(rig.r->pending() == 1);
    CHECK(rig.store.seen.empty());  // nothing reaches the store before the verdict

    auth.resume();
    CHECK(auth.method == "REGISTER");  // the message it was given is still intact
    REQUIRE(rig.store.seen.size() == 1);
    CHECK(rig.r->pending() == 1);  // now waiting for the store
    rig.store.run();
    CHECK(rig.r->pending() == 0);
    REQUIRE(rig.sender.sent.size() == 1);
    auto p = rig.sender.last();
    CHECK(p->code() == 200);
    CHECK(p->contact("sip:a@192.0.2.1") != nullptr);

    // Deferred refusals: answered from the slot, nothing stored.
    auth.verdict = Authenticator::Verdict::Reject;
    bytes = reg({"<sip:b@192.0.2.1>"}).text();
    rig.r->on_datagram(bytes, rig.peer);
    std::fill(bytes.begin(), bytes.end(), 'X');
    auth.resume();
    p = rig.sender.last();
    CHECK(p->code() == 401);
    CHECK(p->headers("WWW-Authenticate").size() == 2);
    CHECK(p->header("Call-ID") == "843817637684230@998sdasdh09");
    CHECK(rig.store.seen.size() == 1);
    CHECK(rig.r->pending() == 0);
    CHECK(rig.stats.auth_failures.get() == 1);
}

// =============================================================================================
// Other methods

TEST_CASE("registrar: OPTIONS -> 200 with Allow, 503 while the store is down") {
    Rig rig;
    Reg o;
    o.method = "OPTIONS";
    auto p = rig.send(o);
    REQUIRE(p);
    CHECK(p->code() == 200);
    CHECK(p->header("Allow") == "REGISTER");  // a list header: one entry per method
    CHECK(p->headers("Allow") == std::vector<std::string>{"REGISTER", "OPTIONS"});
    rig.store.up = false;
    p = rig.send(o);
    REQUIRE(p);
    CHECK(p->code() == 503);
    CHECK(p->header("Retry-After") == "7");
    CHECK(rig.store.seen.empty());
}

TEST_CASE("registrar: other methods -> 405 + Allow: REGISTER, OPTIONS; ACK absorbed") {
    Rig rig;
    for (const char* m : {"INVITE", "BYE", "SUBSCRIBE", "FOO"}) {
        CAPTURE(m);
        Reg r;
        r.method = m;
        r.uri = "sip:alice@example.com";
        auto p = rig.send(r);
        REQUIRE(p);
        CHECK(p->code() == 405);
        CHECK(p->headers("Allow") == std::vector<std::string>{"REGISTER", "OPTIONS"});
    }
    Reg ack;
    ack.method = "ACK";
    CHECK(rig.send(ack) == nullptr);
    CHECK(rig.store.seen.empty());
    CHECK(rig.messages.responses[405].get() == 4);
}

TEST_CASE("registrar: the first checks - 400 naming the fault, drops counted") {
    Rig rig;
    Reg r = reg({"<sip:a@192.0.2.1>"});
    r.from = "";
    std::string text = r.text();
    // Take out the From line altogether.
    std::size_t at = text.find("From: \r\n");
    REQUIRE(at != std::string::npos);
    text.erase(at, 8);
    rig.r->on_datagram(text, rig.peer);
    auto p = rig.sender.last();
    CHECK(p->code() == 400);
    CHECK(p->msg->reason == "Missing From Header");

    rig.r->on_datagram("not sip at all", rig.peer);
    CHECK(rig.messages.dropped[static_cast<std::size_t>(base::DropReason::NotSip)].get() == 1);
    CHECK(rig.sender.sent.size() == 1);
    CHECK(rig.store.seen.empty());
}

TEST_SUITE_END();
