// normalize_aor: the AOR key of DESIGN §4.
#include "sipr/sip/aor.h"

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace sipr::sip;

struct Norm {
    AorStatus status = AorStatus::TooLong;
    std::string aor;
};

Norm norm(std::string_view uri_text, std::string_view domain = {}) {
    std::array<char, kMaxAorLength> out{};
    std::size_t len = 0;
    Norm n;
    n.status = normalize_aor(uri_text, domain, out, len);
    if (n.status == AorStatus::Ok) n.aor.assign(out.data(), len);
    return n;
}

Norm norm_uri(const Uri& uri, std::string_view domain = {}) {
    std::array<char, kMaxAorLength> out{};
    std::size_t len = 0;
    Norm n;
    n.status = normalize_aor(uri, domain, out, len);
    if (n.status == AorStatus::Ok) n.aor.assign(out.data(), len);
    return n;
}

}  // namespace

TEST_CASE("normalize_aor: scheme and host lower-cased, user case kept") {
    auto n = norm("SIP:Alice@EXAMPLE.COM");
    REQUIRE(n.status == AorStatus::Ok);
    CHECK(n.aor == "sip:Alice@example.com");

    CHECK(norm("sip:alice@example.com").aor == "sip:alice@example.com");
    CHECK(norm("Sip:BOB@Biloxi.Example.COM").aor == "sip:BOB@biloxi.example.com");
}

TEST_CASE("normalize_aor: sips scheme kept as sips:") {
    auto n = norm("SIPS:bob@Example.COM");
    REQUIRE(n.status == AorStatus::Ok);
    CHECK(n.aor == "sips:bob@example.com");
}

TEST_CASE("normalize_aor: port, password, parameters and headers dropped") {
    CHECK(norm("sip:alice@example.com:5060").aor == "sip:alice@example.com");
    CHECK(norm("sip:alice:secret@example.com").aor == "sip:alice@example.com");
    CHECK(norm("sip:alice@example.com;transport=udp;lr").aor == "sip:alice@example.com");
    CHECK(norm("sip:alice@example.com?Subject=x&Priority=y").aor == "sip:alice@example.com");
    CHECK(norm("sip:alice:pw@Example.com:5070;transport=tcp?Subject=x").aor ==
          "sip:alice@example.com");
}

TEST_CASE("normalize_aor: %-escapes in the user part are decoded, case kept") {
    CHECK(norm("sip:%61lice@x").aor == "sip:alice@x");
    CHECK(norm("sip:%41lice@x").aor == "sip:Alice@x");
    CHECK(norm("sip:a%2eb@example.com").aor == "sip:a.b@example.com");
}

TEST_CASE("normalize_aor: malformed escape") {
    Uri u;
    u.scheme = Scheme::Sip;
    u.scheme_text = "sip";
    u.user = "%zzalice";
    u.host = "example.com";
    CHECK(norm_uri(u).status == AorStatus::BadEscape);
    u.user = "alice%4";
    CHECK(norm_uri(u).status == AorStatus::BadEscape);
    u.user = "%";
    CHECK(norm_uri(u).status == AorStatus::BadEscape);
    // From text: parse_uri keeps escapes raw, so the bad escape is found by the normaliser.
    CHECK(norm("sip:alice%4@example.com").status == AorStatus::BadEscape);
    CHECK(norm("sip:%zzalice@example.com").status == AorStatus::BadEscape);
    // The whole user part is checked, also after a ';' and in a telephone number.
    CHECK(norm("sip:alice;x=%zz@example.com").status == AorStatus::BadEscape);
    CHECK(norm("sip:+1-201-555-0123;isub=%4@example.com").status == AorStatus::BadEscape);
}

TEST_CASE("normalize_aor: telephone-number user parts lose visual separators") {
    CHECK(norm("sip:+1-201-555-0123@example.com;user=phone").aor == "sip:+12015550123@example.com");
    CHECK(norm("sip:+1.201.555.0123@example.com;user=phone").aor == "sip:+12015550123@example.com");
    CHECK(norm("sip:+1(201)555-0123@example.com;user=phone").aor == "sip:+12015550123@example.com");
    // A local number with user=phone.
    CHECK(norm("sip:555-0123@example.com;user=phone").aor == "sip:5550123@example.com");
    // '+' and digits without user=phone.
    CHECK(norm("sip:+1-201-555-0123@example.com").aor == "sip:+12015550123@example.com");
    CHECK(norm("sip:+1(201)555.0123@example.com").aor == "sip:+12015550123@example.com");
    // RFC 3261 §19.1.3 example: the password is dropped too.
    CHECK(norm("sip:+1-212-555-1212:1234@gateway.com;user=phone").aor ==
          "sip:+12125551212@gateway.com");
    // Telephone-subscriber parameters inside the user part are dropped.
    CHECK(norm("sip:+1-212-555-1212;postd=pp22@foo.com;user=phone").aor ==
          "sip:+12125551212@foo.com");
    // Escaped separators are separators too once decoded.
    CHECK(norm("sip:+1%2D201%2D555%2D0123@example.com").aor == "sip:+12015550123@example.com");
}

TEST_CASE("normalize_aor: a non-telephone user keeps its ';' part") {
    // RFC 3261 §19.1.3 example: "alice;day=tuesday" is the whole user part.
    CHECK(norm("sip:alice;day=tuesday@atlanta.com").aor == "sip:alice;day=tuesday@atlanta.com");
}

TEST_CASE("normalize_aor: other user parts keep their dashes and dots") {
    CHECK(norm("sip:first-last@x").aor == "sip:first-last@x");
    CHECK(norm("sip:first.last@example.com").aor == "sip:first.last@example.com");
    CHECK(norm("sip:a-1(2)@example.com").aor == "sip:a-1(2)@example.com");
    // Digits without '+' and without user=phone are not a telephone number.
    CHECK(norm("sip:555-0123@example.com").aor == "sip:555-0123@example.com");
    // '+' followed by something else is not a telephone number either.
    CHECK(norm("sip:+alice-b@example.com").aor == "sip:+alice-b@example.com");
}

TEST_CASE("normalize_aor: tel: URIs map into the default domain") {
    auto n = norm("tel:+1-201-555-0123", "example.com");
    REQUIRE(n.status == AorStatus::Ok);
    CHECK(n.aor == "sip:+12015550123@example.com");
    CHECK(norm("TEL:+1(201)555.0123", "example.com").aor == "sip:+12015550123@example.com");
    CHECK(norm("tel:+12015550123", "example.com").aor == "sip:+12015550123@example.com");
    CHECK(norm("tel:+1-201-555-0123", "").status == AorStatus::NoDomain);
    CHECK(norm("tel:+1-201-555-0123").status == AorStatus::NoDomain);
}

TEST_CASE("normalize_aor: the default domain does not affect sip URIs") {
    CHECK(norm("sip:alice@atlanta.com", "example.com").aor == "sip:alice@atlanta.com");
}

TEST_CASE("normalize_aor: no user part") {
    CHECK(norm("sip:example.com").status == AorStatus::NoUser);
    CHECK(norm("sip:192.0.2.1:5060").status == AorStatus::NoUser);
    CHECK(norm("sips:[2001:db8::1]").status == AorStatus::NoUser);
}

TEST_CASE("normalize_aor: unsupported scheme") {
    CHECK(norm("http://example.com/alice").status == AorStatus::UnsupportedScheme);
    CHECK(norm("mailto:alice@example.com").status == AorStatus::UnsupportedScheme);
    Uri u;
    u.scheme = Scheme::Other;
    u.scheme_text = "im";
    u.user = "alice";
    u.host = "example.com";
    CHECK(norm_uri(u).status == AorStatus::UnsupportedScheme);
}

TEST_CASE("normalize_aor: text that is not a URI") {
    CHECK(norm("sip:alice@").status == AorStatus::BadUri);
    CHECK(norm("").status == AorStatus::BadUri);
    CHECK(norm("alice@example.com").status == AorStatus::BadUri);
    CHECK(norm("sip:alice@example.com:65536").status == AorStatus::BadUri);
}

TEST_CASE("normalize_aor: IPv6 host kept with brackets") {
    CHECK(norm("sip:alice@[2001:db8::1]").aor == "sip:alice@[2001:db8::1]");
    CHECK(norm("sip:alice@[2001:DB8::1]:5060;transport=udp").aor == "sip:alice@[2001:db8::1]");
}

TEST_CASE("normalize_aor: the Uri overload") {
    Uri u;
    REQUIRE(parse_uri("SIP:Carol@Chicago.COM:5060", u) == UriStatus::Ok);
    std::array<char, 64> out{};
    std::size_t len = 0;
    REQUIRE(normalize_aor(u, {}, out, len) == AorStatus::Ok);
    CHECK(len == 21u);
    CHECK(std::string_view(out.data(), len) == "sip:Carol@chicago.com");
}

TEST_CASE("normalize_aor: too long, never past the buffer") {
    constexpr std::string_view uri = "SIP:+1-201-555-0123@EXAMPLE.com;user=phone";
    constexpr std::string_view expected = "sip:+12015550123@example.com";
    constexpr char kCanary = '\x5a';
    bool too_long_everywhere = true, canary_ok = true;
    std::size_t first_bad = 0;
    for (std::size_t size = 0; size < expected.size(); ++size) {
        std::vector<char> arr(expected.size() + 16, kCanary);
        std::size_t len = 12345;
        const AorStatus s = normalize_aor(uri, {}, std::span<char>(arr.data(), size), len);
        if (s != AorStatus::TooLong && too_long_everywhere) {
            too_long_everywhere = false;
            first_bad = size;
        }
        for (std::size_t i = size; i < arr.size(); ++i)
            if (arr[i] != kCanary) canary_ok = false;
    }
    CAPTURE(first_bad);
    CHECK(too_long_everywhere);
    CHECK(canary_ok);

    std::vector<char> exact(expected.size() + 4, kCanary);
    std::size_t len = 0;
    REQUIRE(normalize_aor(uri, {}, std::span<char>(exact.data(), expected.size()), len) ==
            AorStatus::Ok);
    CHECK(len == expected.size());
    CHECK(std::string_view(exact.data(), len) == expected);
    CHECK(exact[expected.size()] == kCanary);

    // tel: into a default domain that does not fit.
    std::array<char, 20> small{};
    small.fill(kCanary);
    CHECK(normalize_aor("tel:+12015550123", "example.com", std::span<char>(small.data(), 16),
                        len) == AorStatus::TooLong);
    CHECK(small[16] == kCanary);
    CHECK(small[19] == kCanary);

    // A user longer than kMaxAorLength cannot fit the usual buffer.
    const std::string long_uri = "sip:" + std::string(300, 'a') + "@example.com";
    std::array<char, kMaxAorLength> out{};
    CHECK(normalize_aor(long_uri, {}, out, len) == AorStatus::TooLong);
}

TEST_CASE("normalize_aor: TooLong only when the result does not fit `out`") {
    // aor.h: TooLong means "the result does not fit `out`"; a larger caller buffer is allowed.
    const std::string user(300, 'a');
    const std::string expected = "sip:" + user + "@example.com";
    std::vector<char> big(1024);
    std::size_t len = 0;
    CHECK(normalize_aor(expected, {}, big, len) == AorStatus::Ok);
    CHECK(len == expected.size());
    CHECK((std::string_view(big.data(), len) == expected));
}
