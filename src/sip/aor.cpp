#include "sipr/sip/aor.h"

#include "sipr/base/ascii.h"
#include "sipr/base/buffer_writer.h"

namespace sipr::sip {

namespace {

// RFC 3966 §5.1.1 visual separators.
constexpr bool is_visual_separator(char c) noexcept {
    return c == '-' || c == '.' || c == '(' || c == ')';
}

// Calls fn(c) for each character of `s` with %-escapes decoded, until fn returns false. Returns
// false on a malformed escape (checked over the whole of `s`, even after fn stopped).
template <typename Fn>
bool for_each_unescaped(std::string_view s, Fn&& fn) noexcept {
    bool going = true;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '%') {
            if (s.size() - i < 3) return false;
            int hi = base::hex_value(s[i + 1]);
            int lo = base::hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) return false;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        }
        if (going) going = fn(c);
    }
    return true;
}

void append_number(base::BufferWriter& w, std::string_view number) noexcept {
    for (char c : number)
        if (!is_visual_separator(c)) w.append(c);
}

void append_lower(base::BufferWriter& w, std::string_view s) noexcept {
    for (char c : s) w.append(base::to_lower(c));
}

}  // namespace

AorStatus normalize_aor(const Uri& uri, std::string_view default_domain, std::span<char> out,
                        std::size_t& len) noexcept {
    len = 0;
    base::BufferWriter w(out);
    switch (uri.scheme) {
        case Scheme::Other:
            return AorStatus::UnsupportedScheme;
        case Scheme::Tel: {
            // DESIGN §4: tel:<number> maps to sip:<number>@<default domain>.
            if (default_domain.empty()) return AorStatus::NoDomain;
            w.append("sip:");
            append_number(w, uri.user);
            w.append('@');
            append_lower(w, default_domain);
            break;
        }
        case Scheme::Sip:
        case Scheme::Sips: {
            if (uri.user.empty()) return AorStatus::NoUser;
            // Two passes over the un-escaped user part, so `out` only ever holds the result:
            // the first decides whether it is a telephone number, the second writes it.
            bool global_number = true;
            bool saw_digit = false;
            std::size_t pos = 0;
            bool ok = for_each_unescaped(uri.user, [&](char c) {
                if (c == ';') return false;  // the number ends at its first parameter
                if (pos++ == 0)
                    global_number = c == '+';
                else if (base::is_digit(c))
                    saw_digit = true;
                else if (!is_visual_separator(c))
                    global_number = false;
                return true;
            });
            if (!ok) return AorStatus::BadEscape;
            std::string_view user_param;
            bool phone = (find_param(uri.params, "user", user_param) &&
                          base::iequals(user_param, "phone")) ||
                         (global_number && saw_digit);
            w.append(uri.scheme == Scheme::Sips ? "sips:" : "sip:");
            (void)for_each_unescaped(uri.user, [&](char c) {
                if (!phone) {
                    w.append(c);
                    return true;
                }
                if (c == ';') return false;  // RFC 3966 parameters are not part of the AOR
                if (!is_visual_separator(c)) w.append(c);
                return true;
            });
            w.append('@');
            append_lower(w, uri.host);
            break;
        }
    }
    if (w.overflow()) return AorStatus::TooLong;
    len = w.size();
    return AorStatus::Ok;
}

AorStatus normalize_aor(std::string_view uri_text, std::string_view default_domain,
                        std::span<char> out, std::size_t& len) noexcept {
    len = 0;
    Uri uri;
    UriStatus st = parse_uri(uri_text, uri);
    if (st == UriStatus::UnsupportedScheme) return AorStatus::UnsupportedScheme;
    if (st != UriStatus::Ok) return AorStatus::BadUri;
    return normalize_aor(uri, default_domain, out, len);
}

}  // namespace sipr::sip
