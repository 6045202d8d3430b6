#include "sipr/sip/uri.h"

#include <array>

#include "sipr/base/ascii.h"

namespace sipr::sip {

using base::iequals;

namespace {

bool is_scheme(std::string_view s) noexcept {
    // RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    if (s.empty() || !base::is_alpha(s[0])) return false;
    for (char c : s)
        if (!base::is_alnum(c) && c != '+' && c != '-' && c != '.') return false;
    return true;
}

// Characters that never appear unescaped in any part of a SIP URI (RFC 3261 §25.1): controls, white
// space, and the delimiters of the surrounding grammar.
constexpr auto kForbidden = [] {
    std::array<bool, 256> t{};
    for (int c = 0; c <= 0x20; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 0x7f; c <= 0xff; ++c) t[static_cast<std::size_t>(c)] = true;
    for (char c : {'<', '>', '"', '\\', '{', '}', '|', '^', '`'})
        t[static_cast<unsigned char>(c)] = true;
    return t;
}();

constexpr auto kHostname = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (char c : {'-', '.', '_'}) t[static_cast<unsigned char>(c)] = true;
    return t;
}();

bool all_allowed(std::string_view s) noexcept {
    for (char c : s)
        if (kForbidden[static_cast<unsigned char>(c)]) return false;
    return true;
}

bool is_hostname_char(char c) noexcept {
    return kHostname[static_cast<unsigned char>(c)];
}

bool is_ipv6_char(char c) noexcept {
    return base::is_hex(c) || c == ':' || c == '.';
}

}  // namespace

std::size_t parse_hostport(std::string_view s, Uri& out) noexcept {
    std::size_t i = 0;
    if (!s.empty() && s[0] == '[') {
        std::size_t close = s.find(']');
        if (close == std::string_view::npos || close < 3) return 0;
        for (std::size_t k = 1; k < close; ++k)
            if (!is_ipv6_char(s[k])) return 0;
        out.host = s.substr(0, close + 1);
        out.host_is_ipv6 = true;
        i = close + 1;
    } else {
        while (i < s.size() && is_hostname_char(s[i])) ++i;
        if (i == 0) return 0;
        out.host = s.substr(0, i);
        out.host_is_ipv6 = false;
    }
    // A ':' not followed by a digit is left for the caller (Via allows "host : port").
    if (i + 1 < s.size() && s[i] == ':' && base::is_digit(s[i + 1])) {
        std::size_t b = ++i;
        while (i < s.size() && base::is_digit(s[i])) ++i;
        uint32_t port = 0;
        if (!base::parse_u32(s.substr(b, i - b), port, 65535)) return 0;
        out.port = static_cast<uint16_t>(port);
        out.has_port = true;
    }
    return i;
}

namespace {

UriStatus parse_sip(std::string_view rest, Uri& out) noexcept {
    // '@' never appears unescaped in params or headers, so the first one ends the userinfo.
    std::size_t at = rest.find('@');
    std::string_view hostpart = rest;
    if (at != std::string_view::npos) {
        std::string_view userinfo = rest.substr(0, at);
        std::size_t colon = userinfo.find(':');
        out.user = userinfo.substr(0, colon);
        if (colon != std::string_view::npos) out.password = userinfo.substr(colon + 1);
        if (out.user.empty() || !all_allowed(userinfo)) return UriStatus::Malformed;
        hostpart = rest.substr(at + 1);
    }
    std::size_t n = parse_hostport(hostpart, out);
    if (n == 0) return UriStatus::Malformed;
    std::string_view tail = hostpart.substr(n);
    if (tail.empty()) return UriStatus::Ok;
    if (tail[0] != ';' && tail[0] != '?') return UriStatus::Malformed;
    if (!all_allowed(tail)) return UriStatus::Malformed;
    std::size_t q = tail.find('?');
    if (tail[0] == ';') out.params = tail.substr(1, q == std::string_view::npos ? q : q - 1);
    if (q != std::string_view::npos) out.headers = tail.substr(q + 1);
    return UriStatus::Ok;
}

UriStatus parse_tel(std::string_view rest, Uri& out) noexcept {
    // RFC 3966: telephone-subscriber = global-number / local-number, then ;parameters.
    std::size_t semi = rest.find(';');
    std::string_view number = rest.substr(0, semi);
    if (number.empty()) return UriStatus::Malformed;
    for (char c : number)
        if (!base::is_hex(c) && c != '+' && c != '-' && c != '.' && c != '(' && c != ')' &&
            c != '*' && c != '#')
            return UriStatus::Malformed;
    out.user = number;
    if (semi != std::string_view::npos) {
        out.params = rest.substr(semi + 1);
        if (!all_allowed(out.params)) return UriStatus::Malformed;
    }
    return UriStatus::Ok;
}

}  // namespace

UriStatus parse_uri(std::string_view text, Uri& out) noexcept {
    out = Uri{};
    std::size_t colon = text.find(':');
    if (colon == std::string_view::npos) return UriStatus::Malformed;
    std::string_view scheme = text.substr(0, colon);
    if (!is_scheme(scheme)) return UriStatus::Malformed;
    out.scheme_text = scheme;
    std::string_view rest = text.substr(colon + 1);
    if (iequals(scheme, "sip")) {
        out.scheme = Scheme::Sip;
        return parse_sip(rest, out);
    }
    if (iequals(scheme, "sips")) {
        out.scheme = Scheme::Sips;
        return parse_sip(rest, out);
    }
    if (iequals(scheme, "tel")) {
        out.scheme = Scheme::Tel;
        return parse_tel(rest, out);
    }
    out.scheme = Scheme::Other;
    if (rest.empty() || !all_allowed(rest)) return UriStatus::Malformed;
    return UriStatus::UnsupportedScheme;
}

std::ptrdiff_t unescape(std::string_view in, std::span<char> out) noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (in.size() - i < 3) return -1;
            int hi = base::hex_value(in[i + 1]);
            int lo = base::hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        }
        if (n >= out.size()) return -1;
        out[n++] = c;
    }
    return static_cast<std::ptrdiff_t>(n);
}

bool uri_equivalent(std::string_view a, std::string_view b) noexcept {
    Uri ua, ub;
    if (parse_uri(a, ua) != UriStatus::Ok || parse_uri(b, ub) != UriStatus::Ok) return a == b;
    if (ua.scheme != ub.scheme || ua.has_port != ub.has_port || ua.port != ub.port ||
        ua.password != ub.password || !iequals(ua.host, ub.host) ||
        !iequals(ua.params, ub.params) || !iequals(ua.headers, ub.headers))
        return false;
    if (ua.user == ub.user) return true;
    char da[256], db[256];
    std::ptrdiff_t na = unescape(ua.user, da), nb = unescape(ub.user, db);
    if (na < 0 || nb < 0) return false;
    return std::string_view(da, static_cast<std::size_t>(na)) ==
           std::string_view(db, static_cast<std::size_t>(nb));
}

bool ParamIterator::next(std::string_view& name, std::string_view& value,
                         bool& has_value) noexcept {
    for (;;) {
        if (rest_.empty()) return false;
        // The element runs to the next ';' outside a quoted string.
        std::size_t i = 0;
        bool quoted = false;
        for (; i < rest_.size(); ++i) {
            char c = rest_[i];
            if (quoted) {
                if (c == '\\')
                    ++i;
                else if (c == '"')
                    quoted = false;
            } else if (c == '"') {
                quoted = true;
            } else if (c == ';') {
                break;
            }
        }
        std::string_view el = rest_.substr(0, i < rest_.size() ? i : rest_.size());
        rest_ = i < rest_.size() ? rest_.substr(i + 1) : std::string_view{};
        el = base::trim(el);
        if (el.empty()) continue;
        std::size_t eq = el.find('=');
        if (eq == std::string_view::npos) {
            name = el;
            value = {};
            has_value = false;
        } else {
            name = base::trim(el.substr(0, eq));
            value = base::trim(el.substr(eq + 1));
            has_value = true;
        }
        return true;
    }
}

bool find_param(std::string_view params, std::string_view name, std::string_view& value) noexcept {
    ParamIterator it(params);
    std::string_view n, v;
    bool hv = false;
    while (it.next(n, v, hv)) {
        if (iequals(n, name)) {
            value = v;
            return true;
        }
    }
    return false;
}

bool has_param(std::string_view params, std::string_view name) noexcept {
    std::string_view v;
    return find_param(params, name, v);
}

}  // namespace sipr::sip
