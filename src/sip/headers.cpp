#include "sipr/sip/headers.h"

#include "sipr/base/ascii.h"

namespace sipr::sip {

using base::iequals;
using base::is_lws;
using base::trim;

namespace {

std::size_t skip_lws(std::string_view s, std::size_t i) noexcept {
    while (i < s.size() && is_lws(s[i])) ++i;
    return i;
}

// Index of the '"' closing a quoted string whose opening quote is at `open`, or npos.
std::size_t closing_quote(std::string_view s, std::size_t open) noexcept {
    for (std::size_t i = open + 1; i < s.size(); ++i) {
        if (s[i] == '\\')
            ++i;  // quoted-pair, RFC 3261 §25.1
        else if (s[i] == '"')
            return i;
    }
    return std::string_view::npos;
}

std::string_view strip_quotes(std::string_view v) noexcept {
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') return v.substr(1, v.size() - 2);
    return v;
}

// A +sip.instance value that can be written back as "<value>": quoted at both ends (or not
// quoted at all, as some user agents send it), and no quote, backslash, CR or LF inside.
bool valid_instance(std::string_view v) noexcept {
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    for (char c : v)
        if (c == '"' || c == '\\' || c == '\r' || c == '\n') return false;
    return true;
}

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), RFC 3261 §25.1; in thousandths.
bool parse_qvalue(std::string_view v, uint16_t& out) noexcept {
    if (v.empty() || v.size() > 5 || (v[0] != '0' && v[0] != '1')) return false;
    unsigned whole = static_cast<unsigned>(v[0] - '0');
    unsigned frac = 0;
    if (v.size() > 1) {
        if (v[1] != '.') return false;
        unsigned scale = 100;
        for (std::size_t i = 2; i < v.size(); ++i, scale /= 10) {
            if (!base::is_digit(v[i])) return false;
            frac += static_cast<unsigned>(v[i] - '0') * scale;
        }
    }
    if (whole == 1 && frac != 0) return false;
    out = static_cast<uint16_t>(whole * 1000 + frac);
    return true;
}

// Header parameters as RFC 3261 §25.1 generic-param allows them, loosely: each name a token,
// each value a whole quoted-string or free of quotes, white space and control characters. An
// unterminated quote would swallow whatever an answer appends after the header (";tag=" to a To,
// ";expires=" to a Contact; found by fuzz_registrar), and a name that is no token ("<s:t>;\"")
// makes the appended parameter part of a quoted string.
bool params_well_formed(std::string_view params) noexcept {
    ParamIterator it(params);
    std::string_view name, value;
    bool has_value = false;
    while (it.next(name, value, has_value)) {
        if (!base::is_token(name)) return false;
        if (!value.empty() && value.front() == '"') {
            if (closing_quote(value, 0) != value.size() - 1) return false;
            continue;
        }
        for (char c : value)
            if (c == '"' || is_lws(c) || static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
                return false;
    }
    return true;
}

bool is_display_token_char(char c) noexcept {
    return base::is_token_char(c) || is_lws(c);
}

}  // namespace

bool parse_name_addr(std::string_view value, NameAddr& out) noexcept {
    out = NameAddr{};
    std::string_view v = trim(value);
    if (v.empty()) return false;

    std::size_t i = 0;
    if (v[0] == '"') {
        std::size_t close = closing_quote(v, 0);
        if (close == std::string_view::npos) return false;
        out.display_name = v.substr(1, close - 1);
        out.display_quoted = true;
        i = skip_lws(v, close + 1);
        if (i >= v.size() || v[i] != '<') return false;
    } else {
        std::size_t lt = v.find('<');
        if (lt != std::string_view::npos) {
            for (std::size_t k = 0; k < lt; ++k)
                if (!is_display_token_char(v[k])) return false;
            out.display_name = trim(v.substr(0, lt));
            i = lt;
        }
    }

    std::string_view after;
    if (i < v.size() && v[i] == '<') {
        std::size_t gt = v.find('>', i + 1);
        if (gt == std::string_view::npos) return false;
        out.uri_text = trim(v.substr(i + 1, gt - i - 1));
        out.angle_brackets = true;
        after = v.substr(gt + 1);
        std::size_t k = skip_lws(after, 0);
        if (k < after.size() && after[k] != ';') return false;
    } else {
        // addr-spec: RFC 3261 §20 - every parameter after the URI is a header parameter.
        std::size_t semi = v.find(';');
        out.uri_text = trim(v.substr(0, semi));
        after = semi == std::string_view::npos ? std::string_view{} : v.substr(semi);
        for (char c : out.uri_text)
            if (is_lws(c)) return false;
    }
    if (out.uri_text.empty()) return false;
    after = trim(after);
    if (!after.empty()) out.params = trim(after.substr(1));
    if (!params_well_formed(out.params)) return false;

    out.uri_status = parse_uri(out.uri_text, out.uri);
    return out.uri_status != UriStatus::Malformed;
}

std::ptrdiff_t unquote(std::string_view quoted_content, std::span<char> out) noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < quoted_content.size(); ++i) {
        char c = quoted_content[i];
        if (c == '\\' && i + 1 < quoted_content.size()) c = quoted_content[++i];
        if (n >= out.size()) return -1;
        out[n++] = c;
    }
    return static_cast<std::ptrdiff_t>(n);
}

bool parse_from_to(std::string_view value, FromTo& out) noexcept {
    out.tag = {};
    if (!parse_name_addr(value, out.addr)) return false;
    std::string_view tag;
    if (find_param(out.addr.params, "tag", tag)) {
        if (!base::is_token(tag)) return false;
        out.tag = tag;
    }
    return true;
}

bool parse_via(std::string_view value, Via& out) noexcept {
    out = Via{};
    std::string_view v = trim(value);
    // sent-protocol = protocol-name SLASH protocol-version SLASH transport; SLASH = SWS "/" SWS
    std::string_view* parts[3] = {&out.protocol, &out.version, &out.transport};
    std::size_t i = 0;
    for (int p = 0; p < 3; ++p) {
        i = skip_lws(v, i);
        std::size_t b = i;
        while (i < v.size() && base::is_token_char(v[i])) ++i;
        if (i == b) return false;
        *parts[p] = v.substr(b, i - b);
        if (p < 2) {
            i = skip_lws(v, i);
            if (i >= v.size() || v[i] != '/') return false;
            ++i;
        }
    }
    std::size_t before_host = i;
    i = skip_lws(v, i);
    if (i == before_host) return false;  // LWS is required before sent-by

    // sent-by = host [ COLON port ]; COLON allows white space around ':'.
    Uri hp;
    std::string_view rest = v.substr(i);
    std::size_t hostlen = parse_hostport(rest, hp);
    if (hostlen == 0) return false;
    out.host = hp.host;
    out.port = hp.port;
    out.has_port = hp.has_port;
    i += hostlen;
    std::size_t k = skip_lws(v, i);
    if (!out.has_port && k < v.size() && v[k] == ':') {
        k = skip_lws(v, k + 1);
        std::size_t b = k;
        while (k < v.size() && base::is_digit(v[k])) ++k;
        uint32_t port = 0;
        if (!base::parse_u32(v.substr(b, k - b), port, 65535)) return false;
        out.port = static_cast<uint16_t>(port);
        out.has_port = true;
        k = skip_lws(v, k);
    }
    if (k == v.size()) return true;
    if (v[k] != ';') return false;
    out.params = trim(v.substr(k + 1));
    // The answer's top Via is rebuilt from these parameters (received, rport): one that is no
    // token, such as ",", would split it in two (found by fuzz_registrar).
    if (!params_well_formed(out.params)) return false;

    ParamIterator it(out.params);
    std::string_view n, pv;
    bool has_value = false;
    while (it.next(n, pv, has_value)) {
        if (iequals(n, "branch")) {
            if (!base::is_token(pv)) return false;
            out.branch = pv;
        } else if (iequals(n, "received")) {
            out.received = pv;
        } else if (iequals(n, "maddr")) {
            out.maddr = pv;
        } else if (iequals(n, "rport")) {
            out.has_rport = true;
            out.rport = pv;
            uint32_t port = 0;
            if (has_value && !base::parse_u32(pv, port, 65535)) return false;
        }
    }
    return true;
}

bool parse_contact(std::string_view value, Contact& out) noexcept {
    out = Contact{};
    std::string_view v = trim(value);
    if (v == "*") {
        out.star = true;
        return true;
    }
    if (!parse_name_addr(v, out.addr)) return false;
    out.params = out.addr.params;
    ParamIterator it(out.params);
    std::string_view n, pv;
    bool has_value = false;
    while (it.next(n, pv, has_value)) {
        if (iequals(n, "q")) {
            if (!parse_qvalue(pv, out.q)) return false;
            out.has_q = true;
        } else if (iequals(n, "expires")) {
            if (!parse_expires(pv, out.expires)) return false;
            out.has_expires = true;
        } else if (iequals(n, "+sip.instance")) {
            // RFC 5626 §4.1 / RFC 3840 §9: a quoted "<...>" string. The registrar keys the binding
            // by it and writes it back quoted in its 200 (and to every later fetch of the AOR), so
            // a value with a quote, a backslash or a line break in it, or a quote left open,
            // would break that Contact list: the Contact is malformed.
            if (!valid_instance(pv)) return false;
            out.instance = strip_quotes(pv);
        } else if (iequals(n, "reg-id")) {
            // RFC 5626 §4.1: reg-id is 1 to 2^31-1.
            if (!base::parse_u32(pv, out.reg_id, 0x7fffffffu) || out.reg_id == 0) return false;
            out.has_reg_id = true;
        }
    }
    return true;
}

bool parse_cseq(std::string_view value, CSeq& out) noexcept {
    out = CSeq{};
    std::string_view v = trim(value);
    std::size_t i = 0;
    while (i < v.size() && base::is_digit(v[i])) ++i;
    // RFC 3261 §8.1.1.5: the sequence number MUST be less than 2^31.
    if (!base::parse_u32(v.substr(0, i), out.number, 0x7fffffffu)) return false;
    std::size_t m = skip_lws(v, i);
    if (m == i) return false;
    std::string_view method = v.substr(m);
    if (!base::is_token(method)) return false;
    out.method_text = method;
    out.method = method_from_text(method);
    return true;
}

bool parse_max_forwards(std::string_view value, uint32_t& out) noexcept {
    return base::parse_u32(trim(value), out, 255);
}

bool parse_expires(std::string_view value, uint32_t& out) noexcept {
    std::string_view v = trim(value);
    if (v.empty()) return false;
    uint64_t n = 0;
    for (char c : v) {
        if (!base::is_digit(c)) return false;
        n = n * 10 + static_cast<uint64_t>(c - '0');
        if (n > 0xffffffffULL) n = 0xffffffffULL;  // RFC 3261 §20.19: clamp, do not fail
    }
    out = static_cast<uint32_t>(n);
    return true;
}

bool has_option_tag(const Message& m, HeaderId id, std::string_view tag) noexcept {
    for (std::size_t i = 0; i < m.header_count; ++i)
        if (m.headers[i].id == id && iequals(trim(m.headers[i].value), tag)) return true;
    return false;
}

bool option_tags_valid(const Message& m, HeaderId id) noexcept {
    for (std::size_t i = 0; i < m.header_count; ++i)
        if (m.headers[i].id == id && !base::is_token(trim(m.headers[i].value))) return false;
    return true;
}

bool parse_digest_credentials(std::string_view value, DigestCredentials& out) noexcept {
    out = DigestCredentials{};
    std::string_view v = trim(value);
    std::size_t i = 0;
    while (i < v.size() && base::is_token_char(v[i])) ++i;
    if (!iequals(v.substr(0, i), "Digest")) return false;
    if (i < v.size() && !is_lws(v[i])) return false;

    for (;;) {
        while (i < v.size() && (is_lws(v[i]) || v[i] == ',')) ++i;
        if (i >= v.size()) break;
        std::size_t b = i;
        while (i < v.size() && base::is_token_char(v[i])) ++i;
        std::string_view name = v.substr(b, i - b);
        if (name.empty()) return false;
        i = skip_lws(v, i);
        if (i >= v.size() || v[i] != '=') return false;
        i = skip_lws(v, i + 1);
        std::string_view pv;
        if (i < v.size() && v[i] == '"') {
            std::size_t close = closing_quote(v, i);
            if (close == std::string_view::npos) return false;
            pv = v.substr(i + 1, close - i - 1);
            i = close + 1;
        } else {
            b = i;
            while (i < v.size() && base::is_token_char(v[i])) ++i;
            pv = v.substr(b, i - b);
        }
        i = skip_lws(v, i);
        if (i < v.size() && v[i] != ',') return false;

        if (iequals(name, "username"))
            out.username = pv;
        else if (iequals(name, "realm"))
            out.realm = pv;
        else if (iequals(name, "nonce"))
            out.nonce = pv;
        else if (iequals(name, "uri"))
            out.uri = pv;
        else if (iequals(name, "response"))
            out.response = pv;
        else if (iequals(name, "algorithm"))
            out.algorithm = pv;
        else if (iequals(name, "cnonce"))
            out.cnonce = pv;
        else if (iequals(name, "opaque"))
            out.opaque = pv;
        else if (iequals(name, "qop"))
            out.qop = pv;
        else if (iequals(name, "nc"))
            out.nc = pv;
    }
    return !out.username.empty() && !out.realm.empty() && !out.nonce.empty() && !out.uri.empty() &&
           !out.response.empty();
}

}  // namespace sipr::sip
