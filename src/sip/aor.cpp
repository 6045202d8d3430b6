#include "sipr/sip/aor.h"

#include "sipr/base/ascii.h"
#include "sipr/base/buffer_writer.h"

namespace sipr::sip {

namespace {

// RFC 3966 §5.1.1 visual separators.
constexpr bool is_visual_separator(char c) noexcept {
    return c == '-' || c == '.' || c == '(' || c == ')';
}

// '+' then digits and visual separators, with at least one digit.
bool looks_like_global_number(std::string_view user) noexcept {
    if (user.size() < 2 || user[0] != '+') return false;
    bool digit = false;
    for (char c : user.substr(1)) {
        if (base::is_digit(c)) digit = true;
        else if (!is_visual_separator(c)) return false;
    }
    return digit;
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
            w.append(uri.scheme == Scheme::Sips ? "sips:" : "sip:");
            if (w.overflow()) return AorStatus::TooLong;
            // Un-escape the user part straight into `out`, after the scheme.
            const std::size_t at = w.size();
            std::ptrdiff_t n = unescape(uri.user, w.spare());
            if (n < 0) {
                char probe[1];
                bool escapes_ok = true;
                for (std::size_t i = 0; i < uri.user.size() && escapes_ok; ++i)
                    if (uri.user[i] == '%') {
                        escapes_ok = unescape(uri.user.substr(i, 3), probe) == 1;
                        i += 2;
                    }
                return escapes_ok ? AorStatus::TooLong : AorStatus::BadEscape;
            }
            std::string_view user(out.data() + at, static_cast<std::size_t>(n));
            std::string_view number = user.substr(0, user.find(';'));
            std::string_view user_param;
            bool phone = (find_param(uri.params, "user", user_param) &&
                          base::iequals(user_param, "phone")) ||
                         looks_like_global_number(number);
            std::size_t user_len = user.size();
            if (phone) {
                // RFC 3966 visual separators dropped, compacting in place (never grows).
                user_len = 0;
                for (char c : number)
                    if (!is_visual_separator(c)) out[at + user_len++] = c;
            }
            w.advance(user_len);
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
