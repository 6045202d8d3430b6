// The packed binding of DESIGN §6, the Redis key names, and the Redis URL parser: pure functions
// of the location layer (no Redis).
#include "sipr/location/binding.h"

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/location/redis_client.h"
#include "sipr/location/schema.h"

namespace {

using namespace sipr::location;

Binding full_binding() {
    Binding b;
    b.expires_at_ms = 1'700'000'360'000;
    b.updated_at_ms = 1'700'000'000'123;
    b.cseq = 2'147'483'647;
    b.call_id = "843817637684230@998sdasdh09";
    b.contact = "sip:alice@192.0.2.10:5062;transport=udp;ob";
    b.q = 735;
    b.path = "<sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>";
    b.received = "[2001:db8::10]:5062";
    b.user_agent = "softphone/1.0 (linux)";
    b.instance = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";
    b.has_reg_id = true;
    b.reg_id = 4'000'000'000u;
    return b;
}

void check_equal(const BindingView& v, const Binding& b) {
    CHECK(v.expires_at_ms == b.expires_at_ms);
    CHECK(v.updated_at_ms == b.updated_at_ms);
    CHECK(v.cseq == b.cseq);
    CHECK(v.call_id == b.call_id);
    CHECK(v.contact == b.contact);
    CHECK(v.q == b.q);
    CHECK(v.path == b.path);
    CHECK(v.received == b.received);
    CHECK(v.user_agent == b.user_agent);
    CHECK(v.instance == b.instance);
    CHECK(v.has_reg_id == b.has_reg_id);
    CHECK(v.reg_id == b.reg_id);
}

// The fields of a well-formed packed binding, to break one at a time.
std::vector<std::string> good_fields() {
    return {"1",
            "1700000360000",
            "1700000000000",
            "5",
            "call-id",
            "sip:a@192.0.2.1",
            "1000",
            "",
            "192.0.2.1:5060",
            "ua",
            "",
            ""};
}

std::string join(const std::vector<std::string>& f) {
    std::string s;
    for (std::size_t i = 0; i < f.size(); ++i) {
        if (i != 0) s += kFieldSep;
        s += f[i];
    }
    return s;
}

struct Url {
    bool ok = false;
    RedisUrl url;
    std::string error;
};

Url parse(std::string_view text) {
    Url u;
    u.ok = parse_redis_url(text, u.url, u.error);
    return u;
}

}  // namespace

TEST_SUITE_BEGIN("location");

// =============================================================================================
// pack / unpack

TEST_CASE("pack_binding / unpack_binding: every field round-trips") {
    Binding b = full_binding();
    std::string packed = pack_binding(b);
    BindingView v;
    REQUIRE(unpack_binding(packed, v));
    check_equal(v, b);
    // The views point into the packed bytes.
    CHECK(v.contact.data() >= packed.data());
    CHECK(v.contact.data() + v.contact.size() <= packed.data() + packed.size());
    // And back to an owning copy.
    Binding again = to_binding(v);
    CHECK(pack_binding(again) == packed);
}

TEST_CASE("pack_binding: version-1 layout, in the documented order") {
    Binding b = full_binding();
    std::string packed = pack_binding(b);
    std::string expect =
        join({"1", "1700000360000", "1700000000123", "2147483647", b.call_id, b.contact, "735",
              b.path, b.received, b.user_agent, b.instance, "4000000000"});
    CHECK(packed == expect);
    // The tail is everything after updated_at (what the Lua script prefixes).
    std::string tail = pack_binding_tail(b);
    CHECK(packed == "1" + std::string(1, kFieldSep) + "1700000360000" + kFieldSep +
                        "1700000000123" + kFieldSep + tail);
}

TEST_CASE("pack/unpack: minimal binding, empty optional fields, no reg-id") {
    Binding b;
    b.expires_at_ms = 0;
    b.updated_at_ms = 0;
    b.cseq = 0;
    b.contact = "sip:x@y";
    b.q = 0;
    std::string packed = pack_binding(b);
    BindingView v;
    REQUIRE(unpack_binding(packed, v));
    check_equal(v, b);
    CHECK_FALSE(v.has_reg_id);
    CHECK(v.reg_id == 0);
    CHECK(v.call_id.empty());

    b.q = 1000;
    b.has_reg_id = true;
    b.reg_id = 0;
    packed = pack_binding(b);
    REQUIRE(unpack_binding(packed, v));
    CHECK(v.q == 1000);
    CHECK(v.has_reg_id);
    CHECK(v.reg_id == 0);
}

TEST_CASE("pack_binding: 0x1f inside free-text fields is replaced, the layout holds") {
    Binding b = full_binding();
    const std::string us(1, kFieldSep);
    b.call_id = "call" + us + "id";
    b.contact = "sip:a" + us + "b@host";
    b.path = us + "<sip:p;lr>" + us;
    b.received = "1.2.3.4" + us + ":5";
    b.user_agent = "UA" + us + us;
    b.instance = "<urn:" + us + ">";
    std::string packed = pack_binding(b);
    BindingView v;
    REQUIRE(unpack_binding(packed, v));
    CHECK(v.call_id == "call?id");
    CHECK(v.contact == "sip:a?b@host");
    CHECK(v.path == "?<sip:p;lr>?");
    CHECK(v.received == "1.2.3.4?:5");
    CHECK(v.user_agent == "UA??");
    CHECK(v.instance == "<urn:?>");
    CHECK(v.expires_at_ms == b.expires_at_ms);
    CHECK(v.q == b.q);
    CHECK(v.reg_id == b.reg_id);
    CHECK(pack_binding_tail(b).find(us + us) == std::string::npos);  // no field got split
}

TEST_CASE("unpack_binding: the well-formed base case is accepted") {
    const std::string packed = join(good_fields());
    BindingView v;
    REQUIRE(unpack_binding(packed, v));
    CHECK(v.contact == "sip:a@192.0.2.1");
    CHECK(v.q == 1000);
}

TEST_CASE("unpack_binding: garbage is rejected without crashing") {
    struct Case {
        const char* name;
        std::size_t field;
        const char* value;
    };
    const Case cases[] = {
        {"version 2", 0, "2"},
        {"version empty", 0, ""},
        {"version 01", 0, "01"},
        {"expires non-numeric", 1, "12a"},
        {"expires empty", 1, ""},
        {"expires negative", 1, "-5"},
        {"expires overflow", 1, "99999999999999999999"},
        {"updated non-numeric", 2, "x"},
        {"updated negative", 2, "-1"},
        {"cseq negative", 3, "-1"},
        {"cseq non-numeric", 3, "five"},
        {"cseq empty", 3, ""},
        {"cseq overflow", 3, "4294967296"},
        {"contact empty", 5, ""},
        {"q above 1000", 6, "1001"},
        {"q huge", 6, "65536"},
        {"q negative", 6, "-1"},
        {"q fraction", 6, "0.5"},
        {"q empty", 6, ""},
        {"reg-id non-numeric", 11, "one"},
        {"reg-id negative", 11, "-1"},
        {"reg-id with space", 11, "1 "},
        {"expires with sign", 1, "+5"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        std::vector<std::string> f = good_fields();
        f[c.field] = c.value;
        BindingView v;
        CHECK_FALSE(unpack_binding(join(f), v));
    }
}

TEST_CASE("unpack_binding: wrong field counts are rejected") {
    std::vector<std::string> f = good_fields();
    BindingView v;
    for (std::size_t n = 0; n < f.size(); ++n) {
        CAPTURE(n);
        std::vector<std::string> fewer(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(n));
        CHECK_FALSE(unpack_binding(join(fewer), v));
    }
    std::vector<std::string> more = f;
    more.push_back("extra");
    CHECK_FALSE(unpack_binding(join(more), v));
    more = f;
    more.push_back("");
    CHECK_FALSE(unpack_binding(join(more), v));  // a trailing separator
    for (std::size_t k = 0; k < 40; ++k) {
        CAPTURE(k);
        CHECK_FALSE(unpack_binding(std::string(k, kFieldSep), v));
    }
}

TEST_CASE("unpack_binding: arbitrary bytes and every prefix of a good one") {
    std::string packed = pack_binding(full_binding());
    BindingView v;
    // Cut anywhere before the last separator, a field is missing. (A cut inside the last field,
    // reg-id, leaves a shorter number: still a binding.)
    std::size_t last_sep = packed.rfind(kFieldSep);
    for (std::size_t n = 0; n <= last_sep; ++n) {
        CAPTURE(n);
        CHECK_FALSE(unpack_binding(std::string_view(packed).substr(0, n), v));
    }
    const std::string junk[] = {"",
                                "1",
                                "garbage",
                                std::string("\0\0\0", 3),
                                std::string(1000, 'x'),
                                "1\x1f\x1f\x1f\x1f\x1f\x1f"};
    for (const std::string& j : junk) CHECK_FALSE(unpack_binding(j, v));
}

// =============================================================================================
// keys

TEST_CASE("binding_key: the instance when present, else the contact, scheme and host lower-cased") {
    const ContactUri c{"SIP:Alice@Host.Example:5060;Transport=UDP", 3, 10, 12};
    CHECK(binding_key(c, "") == "sip:Alice@host.example:5060;Transport=UDP");
    CHECK(binding_key(c, "<urn:uuid:1>") == "<urn:uuid:1>");
}

TEST_CASE("location_key / subscriber_key: the AOR in a hash tag") {
    CHECK(location_key("sip:alice@example.com") == "sipr:loc:{sip:alice@example.com}");
    CHECK(subscriber_key("sip:alice@example.com") == "sipr:sub:{sip:alice@example.com}");
    CHECK(location_key("") == "sipr:loc:{}");
}

TEST_CASE("write_location_key: same text without allocating; too small -> 0") {
    const std::string_view aor = "sip:alice@example.com";
    const std::string expect = location_key(aor);
    std::array<char, 64> buf{};
    std::size_t n = write_location_key(aor, buf.data(), buf.size());
    REQUIRE(n == expect.size());
    CHECK(std::string_view(buf.data(), n) == expect);

    std::array<char, 64> exact{};
    CHECK(write_location_key(aor, exact.data(), expect.size()) == expect.size());
    CHECK(std::string_view(exact.data(), expect.size()) == expect);

    std::array<char, 64> small{};
    small.fill('.');
    CHECK(write_location_key(aor, small.data(), expect.size() - 1) == 0);
    CHECK(write_location_key(aor, small.data(), 0) == 0);
    CHECK(write_location_key(aor, nullptr, 0) == 0);
}

// =============================================================================================
// Redis URLs

TEST_CASE("parse_redis_url: host and port") {
    Url u = parse("redis://10.1.2.3:6380");
    REQUIRE(u.ok);
    CHECK(u.url.host == "10.1.2.3");
    CHECK(u.url.port == 6380);
    CHECK(u.url.user.empty());
    CHECK(u.url.password.empty());
    CHECK(u.url.db == 0);

    u = parse("redis://redis.example.com");
    REQUIRE(u.ok);
    CHECK(u.url.host == "redis.example.com");
    CHECK(u.url.port == 6379);

    u = parse("redis://localhost:7000");
    REQUIRE(u.ok);
    CHECK(u.url.port == 7000);
    CHECK_FALSE(u.url.host.empty());
}

TEST_CASE("parse_redis_url: user:password, :password and password@") {
    Url u = parse("redis://alice:s3cr3t-pw@10.0.0.1:6379/2");
    REQUIRE(u.ok);
    CHECK(u.url.user == "alice");
    CHECK(u.url.password == "s3cr3t-pw");
    CHECK(u.url.host == "10.0.0.1");
    CHECK(u.url.db == 2);

    u = parse("redis://:only-pw-42@10.0.0.1");
    REQUIRE(u.ok);
    CHECK(u.url.user.empty());
    CHECK(u.url.password == "only-pw-42");
    CHECK(u.url.port == 6379);

    u = parse("redis://tool-style-pw@10.0.0.1");
    REQUIRE(u.ok);
    CHECK(u.url.user.empty());
    CHECK(u.url.password == "tool-style-pw");

    // '@' and ':' inside the password.
    u = parse("redis://bob:p@ss:w0rd@10.0.0.1:6390");
    REQUIRE(u.ok);
    CHECK(u.url.user == "bob");
    CHECK(u.url.password == "p@ss:w0rd");
    CHECK(u.url.host == "10.0.0.1");
    CHECK(u.url.port == 6390);
}

TEST_CASE("parse_redis_url: database number") {
    Url u = parse("redis://10.0.0.1:6379/15");
    REQUIRE(u.ok);
    CHECK(u.url.db == 15);
    u = parse("redis://10.0.0.1/");
    REQUIRE(u.ok);
    CHECK(u.url.db == 0);
    u = parse("redis://10.0.0.1/0");
    REQUIRE(u.ok);
    CHECK(u.url.db == 0);
}

TEST_CASE("parse_redis_url: IPv6 in brackets") {
    Url u = parse("redis://[::1]:7000/3");
    REQUIRE(u.ok);
    CHECK(u.url.host == "::1");
    CHECK(u.url.port == 7000);
    CHECK(u.url.db == 3);

    u = parse("redis://user:pw-v6@[2001:db8::5]");
    REQUIRE(u.ok);
    CHECK(u.url.host == "2001:db8::5");
    CHECK(u.url.port == 6379);
    CHECK(u.url.password == "pw-v6");
}

TEST_CASE("parse_redis_url: bad URLs fail with a reason") {
    const char* bad[] = {
        "",
        "http://10.0.0.1:6379",
        "rediss://10.0.0.1:6379",
        "10.0.0.1:6379",
        "redis:/10.0.0.1",
        "redis://",
        "redis://:6379",
        "redis://user:pw@",
        "redis://10.0.0.1:0",
        "redis://10.0.0.1:65536",
        "redis://10.0.0.1:99999999999",
        "redis://10.0.0.1:port",
        "redis://10.0.0.1:-1",
        "redis://10.0.0.1:63 79",
        "redis://10.0.0.1/x",
        "redis://10.0.0.1/-1",
        "redis://10.0.0.1/1x",
        "redis://10.0.0.1/99999999999",
        "redis://[::1",
        "redis://[::1]x",
        "redis://[]:6379",
    };
    for (const char* text : bad) {
        CAPTURE(text);
        Url u = parse(text);
        CHECK_FALSE(u.ok);
        CHECK_FALSE(u.error.empty());
    }
}

TEST_CASE("parse_redis_url: an IPv6 address without brackets is not taken as host:port") {
    // RFC 3986 §3.2.2: an IPv6 literal in a URI is enclosed in brackets. Without them "::1" must
    // not silently become host ":" port 1: either refused with a reason, or the whole address.
    Url u = parse("redis://::1");
    if (u.ok) {
        CHECK(u.url.host == "::1");
        CHECK(u.url.port == 6379);
    } else {
        CHECK_FALSE(u.error.empty());
    }
}

TEST_CASE("redacted: never contains the password") {
    const char* urls[] = {
        "redis://alice:s3cr3t-pw@10.0.0.1:6380/2",
        "redis://:only-pw-42@10.0.0.1",
        "redis://tool-style-pw@10.0.0.1",
        "redis://bob:p@ss:w0rd@[2001:db8::5]:7000",
    };
    for (const char* text : urls) {
        CAPTURE(text);
        Url u = parse(text);
        REQUIRE(u.ok);
        REQUIRE(!u.url.password.empty());
        std::string r = redacted(u.url);
        CHECK(r.find(u.url.password) == std::string::npos);
        CHECK(r.find("***") != std::string::npos);
        CHECK(r.substr(0, 8) == "redis://");
        CHECK(r.find(u.url.host) != std::string::npos);
    }
    Url u = parse("redis://alice:s3cr3t-pw@10.0.0.1:6380/2");
    CHECK(redacted(u.url) == "redis://alice:***@10.0.0.1:6380/2");
    u = parse("redis://[::1]:7000");
    CHECK(redacted(u.url) == "redis://[::1]:7000");
    u = parse("redis://10.0.0.1");
    CHECK(redacted(u.url) == "redis://10.0.0.1:6379");
    // A parsed-back redacted URL keeps everything but the password.
    u = parse("redis://alice:s3cr3t-pw@10.0.0.1:6380/2");
    Url back = parse(redacted(u.url));
    REQUIRE(back.ok);
    CHECK(back.url.user == "alice");
    CHECK(back.url.host == "10.0.0.1");
    CHECK(back.url.port == 6380);
    CHECK(back.url.db == 2);
}

TEST_SUITE_END();

TEST_CASE("format_resp: the RESP array hiredis would send; too small -> 0") {
    const char* argv[2] = {"HGETALL", "sipr:loc:{sip:a@b}"};
    std::size_t lens[2] = {7, 18};
    char out[128];
    std::size_t n = format_resp(2, argv, lens, out, sizeof out);
    CHECK(std::string_view(out, n) == "*2\r\n$7\r\nHGETALL\r\n$18\r\nsipr:loc:{sip:a@b}\r\n");
    // hiredis's own formatting of the same arguments, byte for byte.
    char* theirs = nullptr;
    int len = redisFormatCommandArgv(&theirs, 2, argv, lens);
    REQUIRE(len > 0);
    CHECK(std::string_view(theirs, static_cast<std::size_t>(len)) == std::string_view(out, n));
    redisFreeCommand(theirs);
    // Binary-safe: an argument with CR LF and NUL inside, and an empty one.
    const char bin[] = {'a', '\r', '\n', '\0', 'b'};
    const char* argv2[3] = {"SET", bin, ""};
    std::size_t lens2[3] = {3, sizeof bin, 0};
    n = format_resp(3, argv2, lens2, out, sizeof out);
    static constexpr char kWant[] = "*3\r\n$3\r\nSET\r\n$5\r\na\r\n\0b\r\n$0\r\n\r\n";
    CHECK(std::string_view(out, n) == std::string_view(kWant, sizeof kWant - 1));
    // NUL-terminated: hiredis's redisAsyncFormattedCommand reads past the RESP for SUBSCRIBE.
    // With stack garbage after it, sip-redirectd aborted in hiredis's nextArgument at start-up.
    std::memset(out, '$', sizeof out);
    CHECK(format_resp(2, argv, lens, out, 43) == 42);  // exactly fits, with its NUL
    CHECK(out[42] == '\0');
    CHECK(format_resp(2, argv, lens, out, 42) == 0);
    CHECK(format_resp(0, argv, lens, out, sizeof out) == 0);
}
