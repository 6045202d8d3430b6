// The redirect service of DESIGN §4, rule by rule: decide(), the classification of a request and
// the order of its checks. No sockets, no Redis.
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
