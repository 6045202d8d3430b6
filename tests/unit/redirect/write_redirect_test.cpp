// The redirect service of DESIGN §4: write_redirect(), the 302 / 404 / 503 it writes for a
// look-up's bindings. No sockets, no Redis.
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
