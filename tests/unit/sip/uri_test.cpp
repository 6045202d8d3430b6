// parse_uri (RFC 3261 §19.1, RFC 3966), unescape and the parameter helpers.
#include "sipr/sip/uri.h"

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace {

using namespace sipr::sip;

struct ParsedUri {
    UriStatus status;
    Uri uri;
};

ParsedUri parse(std::string_view text) {
    ParsedUri p{};
    p.status = parse_uri(text, p.uri);
    return p;
}

// True when `part` is empty or lies inside `whole` (zero-copy contract).
bool points_into(std::string_view part, std::string_view whole) {
    if (part.empty()) return true;
    return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

bool all_views_inside(const Uri& u, std::string_view text) {
    return points_into(u.scheme_text, text) && points_into(u.user, text) &&
           points_into(u.password, text) && points_into(u.host, text) &&
           points_into(u.params, text) && points_into(u.headers, text);
}

}  // namespace

TEST_CASE("parse_uri: plain sip URI") {
    const std::string_view text = "sip:alice@example.com";
    auto p = parse(text);
    REQUIRE(p.status == UriStatus::Ok);
    CHECK(p.uri.scheme == Scheme::Sip);
    CHECK(p.uri.scheme_text == "sip");
    CHECK(p.uri.user == "alice");
    CHECK(p.uri.password.empty());
    CHECK(p.uri.host == "example.com");
    CHECK(p.uri.port == 0);
    CHECK_FALSE(p.uri.has_port);
    CHECK_FALSE(p.uri.host_is_ipv6);
    CHECK(p.uri.params.empty());
    CHECK(p.uri.headers.empty());
    CHECK(all_views_inside(p.uri, text));
}

TEST_CASE("parse_uri: every part of a sips URI") {
    const std::string_view text =
        "sips:bob:secret@host.example.org:5061;transport=tls;lr?Subject=x&Priority=y";
    auto p = parse(text);
    REQUIRE(p.status == UriStatus::Ok);
    CHECK(p.uri.scheme == Scheme::Sips);
    CHECK(p.uri.scheme_text == "sips");
    CHECK(p.uri.user == "bob");
    CHECK(p.uri.password == "secret");
    CHECK(p.uri.host == "host.example.org");
    CHECK(p.uri.has_port);
    CHECK(p.uri.port == 5061);
    CHECK(p.uri.params == "transport=tls;lr");
    CHECK(p.uri.headers == "Subject=x&Priority=y");
    CHECK(all_views_inside(p.uri, text));
}

TEST_CASE("parse_uri: RFC 3261 §19.1.3 examples") {
    {
        auto p = parse("sip:alice:secretword@atlanta.com;transport=tcp");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.user == "alice");
        CHECK(p.uri.password == "secretword");
        CHECK(p.uri.host == "atlanta.com");
        CHECK(p.uri.params == "transport=tcp");
    }
    {
        auto p = parse("sips:alice@atlanta.com?subject=project%20x&priority=urgent");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.scheme == Scheme::Sips);
        CHECK(p.uri.host == "atlanta.com");
        CHECK(p.uri.params.empty());
        CHECK(p.uri.headers == "subject=project%20x&priority=urgent");
    }
    {
        auto p = parse("sip:+1-212-555-1212:1234@gateway.com;user=phone");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.user == "+1-212-555-1212");
        CHECK(p.uri.password == "1234");
        CHECK(p.uri.host == "gateway.com");
        CHECK(p.uri.params == "user=phone");
    }
    {
        auto p = parse("sip:alice@192.0.2.4");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.host == "192.0.2.4");
        CHECK_FALSE(p.uri.has_port);
    }
    {
        auto p = parse("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.user.empty());
        CHECK(p.uri.host == "atlanta.com");
        CHECK(p.uri.params == "method=REGISTER");
        CHECK(p.uri.headers == "to=alice%40atlanta.com");
    }
    {
        // user-unreserved includes ';': the user part runs up to the '@'.
        auto p = parse("sip:alice;day=tuesday@atlanta.com");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.user == "alice;day=tuesday");
        CHECK(p.uri.host == "atlanta.com");
        CHECK(p.uri.params.empty());
    }
}

TEST_CASE("parse_uri: scheme is case-insensitive, text kept as written") {
    auto p = parse("SIP:Alice@EXAMPLE.COM");
    REQUIRE(p.status == UriStatus::Ok);
    CHECK(p.uri.scheme == Scheme::Sip);
    CHECK(p.uri.scheme_text == "SIP");
    CHECK(p.uri.user == "Alice");
    CHECK(p.uri.host == "EXAMPLE.COM");

    auto q = parse("SiPs:bob@b.example");
    REQUIRE(q.status == UriStatus::Ok);
    CHECK(q.uri.scheme == Scheme::Sips);
    CHECK(q.uri.scheme_text == "SiPs");

    auto t = parse("TEL:+12015550123");
    REQUIRE(t.status == UriStatus::Ok);
    CHECK(t.uri.scheme == Scheme::Tel);
    CHECK(t.uri.scheme_text == "TEL");
}

TEST_CASE("parse_uri: host without user, IPv4 with port") {
    auto p = parse("sip:192.0.2.1:5060");
    REQUIRE(p.status == UriStatus::Ok);
    CHECK(p.uri.user.empty());
    CHECK(p.uri.host == "192.0.2.1");
    CHECK(p.uri.has_port);
    CHECK(p.uri.port == 5060);
    CHECK_FALSE(p.uri.host_is_ipv6);
}

TEST_CASE("parse_uri: IPv6 references") {
    {
        const std::string_view text = "sip:[2001:db8::1]";
        auto p = parse(text);
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.user.empty());
        CHECK(p.uri.host == "[2001:db8::1]");
        CHECK(p.uri.host_is_ipv6);
        CHECK_FALSE(p.uri.has_port);
        CHECK(p.uri.port == 0);
        CHECK(all_views_inside(p.uri, text));
    }
    {
        auto p = parse("sip:alice@[2001:db8::1]:5070;lr");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.user == "alice");
        CHECK(p.uri.host == "[2001:db8::1]");
        CHECK(p.uri.host_is_ipv6);
        CHECK(p.uri.has_port);
        CHECK(p.uri.port == 5070);
        CHECK(p.uri.params == "lr");
    }
    {
        auto p = parse("sip:[::ffff:192.0.2.1]:5060");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.host == "[::ffff:192.0.2.1]");
        CHECK(p.uri.port == 5060);
    }
    CHECK(parse("sip:[2001:db8").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@[2001:db8::1").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@[2001:db8::1]x").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@[2001:db8::1]:").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@[]").status == UriStatus::Malformed);
}

TEST_CASE("parse_uri: port bounds") {
    {
        auto p = parse("sip:alice@example.com:0");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.has_port);
        CHECK(p.uri.port == 0);
    }
    {
        auto p = parse("sip:alice@example.com:65535");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.has_port);
        CHECK(p.uri.port == 65535);
    }
    {
        auto p = parse("sip:alice@example.com:5060;transport=udp");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.port == 5060);
        CHECK(p.uri.params == "transport=udp");
    }
    {
        auto p = parse("sip:alice@example.com:5060?Subject=hi");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.port == 5060);
        CHECK(p.uri.params.empty());
        CHECK(p.uri.headers == "Subject=hi");
    }
    CHECK(parse("sip:alice@example.com:65536").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@example.com:99999999999").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@example.com:5x60").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@example.com:-1").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@example.com:").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@example.com:abc").status == UriStatus::Malformed);
}

TEST_CASE("parse_uri: %-escapes are kept raw") {
    auto p = parse("sip:%61lice@example.com");
    REQUIRE(p.status == UriStatus::Ok);
    CHECK(p.uri.user == "%61lice");
    auto q = parse("sip:a%20b:p%40ss@example.com");
    REQUIRE(q.status == UriStatus::Ok);
    CHECK(q.uri.user == "a%20b");
    CHECK(q.uri.password == "p%40ss");
}

TEST_CASE("parse_uri: tel URIs (RFC 3966)") {
    {
        auto p = parse("tel:+1-201-555-0123");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.scheme == Scheme::Tel);
        CHECK(p.uri.scheme_text == "tel");
        CHECK(p.uri.user == "+1-201-555-0123");
        CHECK(p.uri.host.empty());
        CHECK(p.uri.params.empty());
        CHECK_FALSE(p.uri.has_port);
    }
    {
        auto p = parse("tel:7042;phone-context=example.com");
        REQUIRE(p.status == UriStatus::Ok);
        CHECK(p.uri.user == "7042");
        CHECK(p.uri.params == "phone-context=example.com");
    }
    CHECK(parse("tel:").status == UriStatus::Malformed);
}

TEST_CASE("parse_uri: other schemes are unsupported, not malformed") {
    {
        auto p = parse("http://example.com/");
        CHECK(p.status == UriStatus::UnsupportedScheme);
        CHECK(p.uri.scheme == Scheme::Other);
        CHECK(p.uri.scheme_text == "http");
    }
    {
        auto p = parse("mailto:alice@example.com");
        CHECK(p.status == UriStatus::UnsupportedScheme);
        CHECK(p.uri.scheme_text == "mailto");
    }
    {
        auto p = parse("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
        CHECK(p.status == UriStatus::UnsupportedScheme);
        CHECK(p.uri.scheme_text == "urn");
    }
    {
        // A scheme that merely starts with "sip" is another scheme.
        auto p = parse("sipx:alice@example.com");
        CHECK(p.status == UriStatus::UnsupportedScheme);
        CHECK(p.uri.scheme_text == "sipx");
    }
}

TEST_CASE("parse_uri: malformed") {
    CHECK(parse("").status == UriStatus::Malformed);
    CHECK(parse("sip:").status == UriStatus::Malformed);
    CHECK(parse("sips:").status == UriStatus::Malformed);
    CHECK(parse("sip:@example.com").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@:5060").status == UriStatus::Malformed);
    CHECK(parse("sip:ali ce@example.com").status == UriStatus::Malformed);
    CHECK(parse("sip: alice@example.com").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@exa mple.com").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@example.com ").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@example.com;lr x").status == UriStatus::Malformed);
    CHECK(parse("sip:alice@exa<mple.com").status == UriStatus::Malformed);
    // Not a URI at all: no scheme, or a scheme that does not start with a letter.
    CHECK(parse("alice@example.com").status == UriStatus::Malformed);
    CHECK(parse(":alice@example.com").status == UriStatus::Malformed);
    CHECK(parse("1sip:alice@example.com").status == UriStatus::Malformed);
}

TEST_CASE("parse_hostport: host and port at the start of a string") {
    {
        Uri u;
        CHECK(parse_hostport("example.com:5060;transport=udp", u) == 16u);
        CHECK(u.host == "example.com");
        CHECK(u.has_port);
        CHECK(u.port == 5060);
        CHECK_FALSE(u.host_is_ipv6);
    }
    {
        Uri u;
        CHECK(parse_hostport("[2001:db8::1]:5070 rest", u) == 18u);
        CHECK(u.host == "[2001:db8::1]");
        CHECK(u.host_is_ipv6);
        CHECK(u.port == 5070);
    }
    {
        Uri u;
        CHECK(parse_hostport("192.0.2.1;branch=z9hG4bK1", u) == 9u);
        CHECK(u.host == "192.0.2.1");
        CHECK_FALSE(u.has_port);
    }
    {
        Uri u;
        CHECK(parse_hostport("host rest", u) == 4u);
        CHECK(u.host == "host");
    }
    Uri u;
    CHECK(parse_hostport("", u) == 0u);
    CHECK(parse_hostport(":5060", u) == 0u);
    CHECK(parse_hostport("host:65536", u) == 0u);
    CHECK(parse_hostport("[2001:db8::1", u) == 0u);
    CHECK(parse_hostport(";x", u) == 0u);
}

TEST_CASE("unescape: decodes %-escapes") {
    std::array<char, 32> out{};
    CHECK(unescape("%61lice", out) == 5);
    CHECK(std::string_view(out.data(), 5) == "alice");
    CHECK(unescape("a%2Fb%2fc", out) == 5);
    CHECK(std::string_view(out.data(), 5) == "a/b/c");
    CHECK(unescape("100%25", out) == 4);
    CHECK(std::string_view(out.data(), 4) == "100%");
    CHECK(unescape("plain", out) == 5);
    CHECK(std::string_view(out.data(), 5) == "plain");
    CHECK(unescape("", out) == 0);
    CHECK(unescape("%41%42%43", out) == 3);
    CHECK(std::string_view(out.data(), 3) == "ABC");
}

TEST_CASE("unescape: malformed escapes") {
    std::array<char, 32> out{};
    CHECK(unescape("%4", out) == -1);
    CHECK(unescape("abc%4", out) == -1);
    CHECK(unescape("%", out) == -1);
    CHECK(unescape("%zz", out) == -1);
    CHECK(unescape("%4g", out) == -1);
    CHECK(unescape("%g4", out) == -1);
    CHECK(unescape("a%%41", out) == -1);
}

TEST_CASE("unescape: output too small, never past the buffer") {
    std::array<char, 16> a{};
    a.fill('#');
    CHECK(unescape("alice", std::span<char>(a.data(), 4)) == -1);
    CHECK(unescape("%61lice", std::span<char>(a.data(), 4)) == -1);
    CHECK(unescape("x", std::span<char>(a.data(), 0)) == -1);
    for (std::size_t i = 4; i < a.size(); ++i) CHECK(a[i] == '#');

    a.fill('#');
    CHECK(unescape("%61lice", std::span<char>(a.data(), 5)) == 5);  // exact fit
    CHECK(std::string_view(a.data(), 5) == "alice");
    CHECK(a[5] == '#');

    CHECK(unescape("", std::span<char>(a.data(), 0)) == 0);
}

TEST_CASE("ParamIterator: names, values, valueless parameters") {
    ParamIterator it("transport=udp;lr;maddr=239.255.255.1");
    std::string_view name, value;
    bool has_value = false;

    REQUIRE(it.next(name, value, has_value));
    CHECK(name == "transport");
    CHECK(value == "udp");
    CHECK(has_value);

    REQUIRE(it.next(name, value, has_value));
    CHECK(name == "lr");
    CHECK(value.empty());
    CHECK_FALSE(has_value);

    REQUIRE(it.next(name, value, has_value));
    CHECK(name == "maddr");
    CHECK(value == "239.255.255.1");
    CHECK(has_value);

    CHECK_FALSE(it.next(name, value, has_value));
    CHECK_FALSE(it.next(name, value, has_value));  // stays at the end
}

TEST_CASE("ParamIterator: empty list") {
    ParamIterator it("");
    std::string_view name, value;
    bool has_value = true;
    CHECK_FALSE(it.next(name, value, has_value));
}

TEST_CASE("ParamIterator: white space around names, '=' and values") {
    ParamIterator it(" tag = 1928301774 ;  lr ;q= 0.5");
    std::string_view name, value;
    bool has_value = false;
    REQUIRE(it.next(name, value, has_value));
    CHECK(name == "tag");
    CHECK(value == "1928301774");
    CHECK(has_value);
    REQUIRE(it.next(name, value, has_value));
    CHECK(name == "lr");
    CHECK_FALSE(has_value);
    REQUIRE(it.next(name, value, has_value));
    CHECK(name == "q");
    CHECK(value == "0.5");
    CHECK_FALSE(it.next(name, value, has_value));
}

TEST_CASE("ParamIterator: quoted values keep their quotes and may hold ';'") {
    ParamIterator it(R"(+sip.instance="<urn:uuid:1234>";text="a;b=c";esc="x\";y";last)");
    std::string_view name, value;
    bool has_value = false;
    REQUIRE(it.next(name, value, has_value));
    CHECK(name == "+sip.instance");
    CHECK(value == "\"<urn:uuid:1234>\"");
    REQUIRE(it.next(name, value, has_value));
    CHECK(name == "text");
    CHECK(value == "\"a;b=c\"");
    REQUIRE(it.next(name, value, has_value));
    CHECK(name == "esc");
    CHECK(value == R"("x\";y")");
    REQUIRE(it.next(name, value, has_value));
    CHECK(name == "last");
    CHECK_FALSE(has_value);
    CHECK_FALSE(it.next(name, value, has_value));
}

TEST_CASE("find_param / has_param") {
    const std::string_view params = "Transport=UDP;LR;maddr=10.0.0.1;user=phone";
    std::string_view v = "unchanged";
    CHECK(find_param(params, "transport", v));
    CHECK(v == "UDP");  // the value's case is kept
    CHECK(find_param(params, "TRANSPORT", v));
    CHECK(v == "UDP");
    CHECK(find_param(params, "lr", v));
    CHECK(v.empty());
    CHECK(find_param(params, "user", v));
    CHECK(v == "phone");
    CHECK_FALSE(find_param(params, "ttl", v));

    CHECK(has_param(params, "lr"));
    CHECK(has_param(params, "Lr"));
    CHECK(has_param(params, "maddr"));
    CHECK_FALSE(has_param(params, "method"));
    // Whole names only: no prefix, suffix or value matches.
    CHECK_FALSE(has_param(params, "l"));
    CHECK_FALSE(has_param(params, "lrx"));
    CHECK_FALSE(has_param(params, "trans"));
    CHECK_FALSE(has_param(params, "phone"));
    CHECK_FALSE(has_param("xlr=1", "lr"));
    CHECK_FALSE(has_param("", "lr"));
    // A name inside a quoted value is not a parameter.
    CHECK_FALSE(has_param(R"(a=";lr;")", "lr"));

    CHECK(find_param(" ttl = 16 ; branch=z9hG4bK1", "ttl", v));
    CHECK(v == "16");
    CHECK(find_param(" ttl = 16 ; branch=z9hG4bK1", "branch", v));
    CHECK(v == "z9hG4bK1");
    // First occurrence wins.
    CHECK(find_param("a=1;a=2", "a", v));
    CHECK(v == "1");
}

TEST_CASE("uri_equivalent: RFC 3261 §19.1.4 where it matters for the loop guard and dedup") {
    CHECK(uri_equivalent("sip:bob@biloxi.com", "SIP:bob@BILOXI.com"));
    CHECK(uri_equivalent("sip:%62ob@biloxi.com", "sip:bob@biloxi.com"));      // escaped = unescaped
    CHECK_FALSE(uri_equivalent("sip:Bob@biloxi.com", "sip:bob@biloxi.com"));  // user is exact
    CHECK_FALSE(uri_equivalent("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
    CHECK_FALSE(uri_equivalent("sip:bob@biloxi.com", "sips:bob@biloxi.com"));
    CHECK_FALSE(uri_equivalent("sip:bob:pw@biloxi.com", "sip:bob:PW@biloxi.com"));
    CHECK(uri_equivalent("sip:bob@h;transport=UDP", "sip:bob@h;transport=udp"));
    CHECK_FALSE(uri_equivalent("sip:bob@h;transport=udp", "sip:bob@h"));
    CHECK(uri_equivalent("not a uri", "not a uri"));
    CHECK_FALSE(uri_equivalent("not a uri", "NOT A URI"));
}
