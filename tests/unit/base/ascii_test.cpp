// Locale-free ASCII helpers: iequals, trim, is_token, parse_u32 and the character classes.
#include "sipr/base/ascii.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <string_view>

namespace {
using namespace sipr::base;
using namespace std::string_view_literals;
}  // namespace

TEST_CASE("ascii: to_lower and character classes") {
    CHECK(to_lower('A') == 'a');
    CHECK(to_lower('Z') == 'z');
    CHECK(to_lower('a') == 'a');
    CHECK(to_lower('@') == '@');  // 0x40, just below 'A'
    CHECK(to_lower('[') == '[');  // 0x5b, just above 'Z'
    CHECK(is_digit('0'));
    CHECK(is_digit('9'));
    CHECK_FALSE(is_digit('a'));
    CHECK_FALSE(is_digit('/'));
    CHECK_FALSE(is_digit(':'));
    CHECK(is_hex('f'));
    CHECK(is_hex('F'));
    CHECK_FALSE(is_hex('g'));
    CHECK_FALSE(is_hex('G'));
    CHECK(hex_value('0') == 0);
    CHECK(hex_value('9') == 9);
    CHECK(hex_value('a') == 10);
    CHECK(hex_value('F') == 15);
    CHECK(hex_value('g') == -1);
    CHECK(hex_value(' ') == -1);
    CHECK(is_lws(' '));
    CHECK(is_lws('\t'));
    CHECK(is_lws('\r'));
    CHECK(is_lws('\n'));
    CHECK_FALSE(is_lws('\v'));
    CHECK_FALSE(is_lws('\0'));
}

TEST_CASE("ascii: iequals") {
    CHECK(iequals("Via", "VIA"));
    CHECK(iequals("call-id", "Call-ID"));
    CHECK(iequals("", ""));
    CHECK_FALSE(iequals("Via", "Vias"));
    CHECK_FALSE(iequals("a", ""));
    CHECK_FALSE(iequals("abc", "abd"));
    // Only A-Z fold: '@' / '`' and '[' / '{' differ by 0x20 but are not letters.
    CHECK_FALSE(iequals("@", "`"));
    CHECK_FALSE(iequals("[", "{"));
    CHECK_FALSE(iequals("x-1", "X_1"));
    // Embedded NULs are compared like any other byte.
    CHECK(iequals("a\0b"sv, "A\0B"sv));
    CHECK_FALSE(iequals("a\0b"sv, "a\0c"sv));
}

TEST_CASE("ascii: trim removes SP, HT, CR and LF at both ends only") {
    CHECK(trim("  abc  ") == "abc");
    CHECK(trim("\t\r\n abc \r\n\t") == "abc");
    CHECK(trim("a b\r\n c") == "a b\r\n c");
    CHECK(trim(" \r\n\t ").empty());
    CHECK(trim("").empty());
    CHECK(trim("x") == "x");
    CHECK(trim("\vx\v") == "\vx\v");  // VT is not linear white space
    // The result is a view into the argument.
    constexpr std::string_view s = "  mid  ";
    CHECK(trim(s).data() == s.data() + 2);
}

TEST_CASE("ascii: is_token (RFC 3261 §25.1)") {
    CHECK(is_token("INVITE"));
    CHECK(is_token("z9hG4bK-.!%*_+`'~09"));
    CHECK(is_token("a"));
    CHECK_FALSE(is_token(""));
    CHECK_FALSE(is_token("a b"));
    CHECK_FALSE(is_token("a;b"));
    CHECK_FALSE(is_token("a=b"));
    CHECK_FALSE(is_token("a:b"));
    CHECK_FALSE(is_token("a/b"));
    CHECK_FALSE(is_token("\"a\""));
    CHECK_FALSE(is_token("a,b"));
    CHECK_FALSE(is_token("(a)"));
    CHECK_FALSE(is_token("<a>"));
    CHECK_FALSE(is_token("a@b"));
    CHECK_FALSE(is_token("a\tb"));
    CHECK_FALSE(is_token("\x80"));
}

TEST_CASE("ascii: parse_u32") {
    uint32_t v = 12345;
    CHECK(parse_u32("0", v));
    CHECK(v == 0u);
    CHECK(parse_u32("4294967295", v));
    CHECK(v == 4294967295u);
    CHECK(parse_u32("0000000001", v));  // ten digits, leading zeros allowed
    CHECK(v == 1u);
    CHECK(parse_u32("0004294967", v));
    CHECK(v == 4294967u);

    v = 777;
    CHECK_FALSE(parse_u32("4294967296", v));   // 2^32
    CHECK_FALSE(parse_u32("9999999999", v));   // ten digits, overflow
    CHECK_FALSE(parse_u32("00000000001", v));  // eleven digits
    CHECK_FALSE(parse_u32("", v));
    CHECK_FALSE(parse_u32("12a", v));
    CHECK_FALSE(parse_u32("a12", v));
    CHECK_FALSE(parse_u32("-1", v));
    CHECK_FALSE(parse_u32("+1", v));
    CHECK_FALSE(parse_u32(" 1", v));
    CHECK_FALSE(parse_u32("1 ", v));
    CHECK_FALSE(parse_u32("1.0", v));
    CHECK(v == 777u);  // untouched by failures
}

TEST_CASE("ascii: parse_u32 with a maximum") {
    uint32_t v = 1;
    CHECK(parse_u32("255", v, 255));
    CHECK(v == 255u);
    v = 1;
    CHECK_FALSE(parse_u32("256", v, 255));
    CHECK(v == 1u);
    CHECK(parse_u32("0", v, 0));
    CHECK(v == 0u);
    CHECK_FALSE(parse_u32("1", v, 0));
    CHECK(parse_u32("2147483647", v, 2147483647u));
    CHECK(v == 2147483647u);
    CHECK_FALSE(parse_u32("2147483648", v, 2147483647u));
}

TEST_CASE("ascii: parse_u32 never reads past its view") {
    constexpr std::string_view digits = "1234567";
    uint32_t v = 0;
    CHECK(parse_u32(digits.substr(0, 3), v));
    CHECK(v == 123u);
    // A view that stops before a non-digit is fine.
    constexpr std::string_view mixed = "42x";
    CHECK(parse_u32(mixed.substr(0, 2), v));
    CHECK(v == 42u);
}

TEST_CASE("ascii: usable in constant expressions") {
    static_assert(iequals("Content-Length", "content-length"));
    static_assert(trim(" a ") == "a");
    static_assert(is_token("REGISTER"));
    static_assert(hex_value('c') == 12);
    CHECK(true);
}
