#pragma once
// Locale-free ASCII helpers used by every parser. All are constexpr, noexcept and never allocate.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sipr::base {

constexpr char to_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
constexpr bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}
constexpr bool is_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_alnum(char c) noexcept {
    return is_digit(c) || is_alpha(c);
}
constexpr bool is_hex(char c) noexcept {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
constexpr int hex_value(char c) noexcept {
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
// Linear white space inside a header value: SP, HT and the CR/LF of a folded line (RFC 3261
// §7.3.1).
constexpr bool is_lws(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// RFC 3261 §25.1 token characters, as a table: parsers test this per byte.
inline constexpr auto kTokenTable = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (char c : {'-', '.', '!', '%', '*', '_', '+', '`', '\'', '~'})
        t[static_cast<unsigned char>(c)] = true;
    return t;
}();
constexpr bool is_token_char(char c) noexcept {
    return kTokenTable[static_cast<unsigned char>(c)];
}

// Case-insensitive ASCII equality.
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (to_lower(a[i]) != to_lower(b[i])) return false;
    return true;
}

// Returns `s` without leading and trailing linear white space.
constexpr std::string_view trim(std::string_view s) noexcept {
    std::size_t b = 0, e = s.size();
    while (b < e && is_lws(s[b])) ++b;
    while (e > b && is_lws(s[e - 1])) --e;
    return s.substr(b, e - b);
}

constexpr bool is_token(std::string_view s) noexcept {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_token_char(c)) return false;
    return true;
}

// Parses a decimal number of 1..10 digits into `out`; fails on anything else or on a value above
// `max`. Never reads past `s`.
constexpr bool parse_u32(std::string_view s, uint32_t& out, uint32_t max = 0xffffffffu) noexcept {
    if (s.empty() || s.size() > 10) return false;
    uint64_t v = 0;
    for (char c : s) {
        if (!is_digit(c)) return false;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v > max) return false;
    out = static_cast<uint32_t>(v);
    return true;
}

}  // namespace sipr::base
