#include "sipr/sip/message.h"

#include <algorithm>
#include <cstring>

#include "sipr/base/ascii.h"

namespace sipr::sip {

using base::iequals;
using base::to_lower;

HeaderId header_id(std::string_view n) noexcept {
    if (n.empty()) return HeaderId::Other;
    if (n.size() == 1) {
        // Compact forms, RFC 3261 §7.3.3 and the registrations that followed it.
        switch (to_lower(n[0])) {
            case 'i': return HeaderId::CallId;
            case 'm': return HeaderId::Contact;
            case 'e': return HeaderId::ContentEncoding;
            case 'l': return HeaderId::ContentLength;
            case 'c': return HeaderId::ContentType;
            case 'f': return HeaderId::From;
            case 's': return HeaderId::Subject;
            case 'k': return HeaderId::Supported;
            case 't': return HeaderId::To;
            case 'v': return HeaderId::Via;
            case 'o': return HeaderId::Event;              // RFC 6665
            case 'u': return HeaderId::AllowEvents;        // RFC 6665
            case 'r': return HeaderId::ReferTo;            // RFC 3515
            case 'b': return HeaderId::ReferredBy;         // RFC 3892
            case 'x': return HeaderId::SessionExpires;     // RFC 4028
            case 'y': return HeaderId::Identity;           // RFC 8224
            default: return HeaderId::Other;
        }
    }
    struct Entry {
        std::string_view name;
        HeaderId id;
    };
    // Grouped by first letter so a lookup compares against a handful of names at most.
    static constexpr Entry kA[] = {{"allow", HeaderId::Allow},
                                   {"authorization", HeaderId::Authorization},
                                   {"allow-events", HeaderId::AllowEvents}};
    static constexpr Entry kC[] = {{"call-id", HeaderId::CallId},
                                   {"cseq", HeaderId::CSeq},
                                   {"contact", HeaderId::Contact},
                                   {"content-length", HeaderId::ContentLength},
                                   {"content-type", HeaderId::ContentType},
                                   {"content-encoding", HeaderId::ContentEncoding}};
    static constexpr Entry kD[] = {{"date", HeaderId::Date}};
    static constexpr Entry kE[] = {{"expires", HeaderId::Expires}, {"event", HeaderId::Event}};
    static constexpr Entry kF[] = {{"from", HeaderId::From}};
    static constexpr Entry kI[] = {{"identity", HeaderId::Identity}};
    static constexpr Entry kM[] = {{"max-forwards", HeaderId::MaxForwards},
                                   {"min-expires", HeaderId::MinExpires}};
    static constexpr Entry kP[] = {{"path", HeaderId::Path},
                                   {"proxy-require", HeaderId::ProxyRequire},
                                   {"proxy-authorization", HeaderId::ProxyAuthorization}};
    static constexpr Entry kR[] = {{"route", HeaderId::Route},
                                   {"record-route", HeaderId::RecordRoute},
                                   {"require", HeaderId::Require},
                                   {"refer-to", HeaderId::ReferTo},
                                   {"referred-by", HeaderId::ReferredBy},
                                   {"retry-after", HeaderId::RetryAfter}};
    static constexpr Entry kS[] = {{"supported", HeaderId::Supported},
                                   {"subject", HeaderId::Subject},
                                   {"session-expires", HeaderId::SessionExpires}};
    static constexpr Entry kT[] = {{"to", HeaderId::To}};
    static constexpr Entry kU[] = {{"unsupported", HeaderId::Unsupported},
                                   {"user-agent", HeaderId::UserAgent}};
    static constexpr Entry kV[] = {{"via", HeaderId::Via}};
    static constexpr Entry kW[] = {{"www-authenticate", HeaderId::WwwAuthenticate}};

    auto scan = [n](const auto& table) noexcept {
        for (const Entry& e : table)
            if (iequals(e.name, n)) return e.id;
        return HeaderId::Other;
    };
    switch (to_lower(n[0])) {
        case 'a': return scan(kA);
        case 'c': return scan(kC);
        case 'd': return scan(kD);
        case 'e': return scan(kE);
        case 'f': return scan(kF);
        case 'i': return scan(kI);
        case 'm': return scan(kM);
        case 'p': return scan(kP);
        case 'r': return scan(kR);
        case 's': return scan(kS);
        case 't': return scan(kT);
        case 'u': return scan(kU);
        case 'v': return scan(kV);
        case 'w': return scan(kW);
        default: return HeaderId::Other;
    }
}

bool is_list_header(HeaderId id) noexcept {
    switch (id) {
        case HeaderId::Via:
        case HeaderId::Contact:
        case HeaderId::Route:
        case HeaderId::RecordRoute:
        case HeaderId::Path:
        case HeaderId::Require:
        case HeaderId::ProxyRequire:
        case HeaderId::Supported:
        case HeaderId::Unsupported:
        case HeaderId::Allow:
            return true;
        default:
            return false;
    }
}

const Header* Message::find(HeaderId id) const noexcept {
    for (std::size_t i = 0; i < header_count; ++i)
        if (headers[i].id == id) return &headers[i];
    return nullptr;
}

const Header* Message::find(std::string_view name) const noexcept {
    HeaderId id = header_id(name);
    if (id != HeaderId::Other) return find(id);
    for (std::size_t i = 0; i < header_count; ++i)
        if (headers[i].id == HeaderId::Other && iequals(headers[i].name, name)) return &headers[i];
    return nullptr;
}

std::size_t Message::count(HeaderId id) const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < header_count; ++i) n += headers[i].id == id;
    return n;
}

std::string_view parse_status_text(ParseStatus s) noexcept {
    switch (s) {
        case ParseStatus::Ok: return "ok";
        case ParseStatus::Malformed: return "malformed";
        case ParseStatus::TooLarge: return "too large";
        case ParseStatus::TooManyHeaders: return "too many headers";
        case ParseStatus::BadContentLength: return "bad content-length";
    }
    return "unknown";
}

namespace {

// Cursor over the head of a message, line by line. A line ends at LF; a CR before it is dropped.
struct Lines {
    const char* p;
    const char* end;

    // Returns false when no LF is left (the line would be truncated).
    bool next(std::string_view& line) noexcept {
        const void* lf = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
        if (lf == nullptr) return false;
        const char* e = static_cast<const char*>(lf);
        const char* content_end = (e > p && e[-1] == '\r') ? e - 1 : e;
        line = std::string_view(p, static_cast<std::size_t>(content_end - p));
        p = e + 1;
        return true;
    }
    [[nodiscard]] bool continues() const noexcept { return p < end && (*p == ' ' || *p == '\t'); }
};

bool has_nul(std::string_view s) noexcept { return std::memchr(s.data(), '\0', s.size()) != nullptr; }

// RFC 3261 §7.1 Request-Line: Method SP Request-URI SP SIP-Version, single spaces.
bool parse_request_line(std::string_view line, Message& out) noexcept {
    std::size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) return false;
    std::size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return false;
    std::string_view method = line.substr(0, sp1);
    std::string_view uri = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    if (!base::is_token(method) || uri.empty() || !iequals(version, "SIP/2.0")) return false;
    for (char c : uri)
        if (c == ' ' || c == '\t' || static_cast<unsigned char>(c) < 0x21) return false;
    out.is_request = true;
    out.method_name = method;
    out.method = method_from_text(method);
    out.request_uri = uri;
    out.version = version;
    return true;
}

// RFC 3261 §7.2 Status-Line: SIP-Version SP Status-Code SP Reason-Phrase.
bool parse_status_line(std::string_view line, Message& out) noexcept {
    if (line.size() < 11 || !iequals(line.substr(0, 8), "SIP/2.0 ")) return false;
    std::string_view code = line.substr(8, 3);
    uint32_t v = 0;
    if (!base::parse_u32(code, v) || v < 100 || v > 699) return false;
    if (line.size() > 11 && line[11] != ' ') return false;
    out.is_request = false;
    out.version = line.substr(0, 7);
    out.status_code = static_cast<uint16_t>(v);
    out.reason = line.size() > 12 ? line.substr(12) : std::string_view{};
    return true;
}

// Splits a list header value on commas outside quoted strings and angle brackets. Calls
// `emit(element)` for each non-empty, trimmed element; returns false if emit refused.
template <typename Emit>
bool split_list(std::string_view v, Emit&& emit) noexcept {
    bool in_quote = false;
    int angle = 0;
    std::size_t start = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
        char c = v[i];
        if (in_quote) {
            if (c == '\\') ++i;  // quoted-pair
            else if (c == '"') in_quote = false;
        } else if (c == '"') {
            in_quote = true;
        } else if (c == '<') {
            ++angle;
        } else if (c == '>') {
            if (angle > 0) --angle;
        } else if (c == ',' && angle == 0) {
            std::string_view el = base::trim(v.substr(start, i - start));
            if (!el.empty() && !emit(el)) return false;
            start = i + 1;
        }
    }
    std::string_view el = base::trim(v.substr(std::min(start, v.size())));
    if (!el.empty() && !emit(el)) return false;
    return true;
}

}  // namespace

ParseStatus parse_message(std::string_view bytes, Message& out, const ParseLimits& limits) noexcept {
    out.is_request = false;
    out.method = Method::Unknown;
    out.method_name = out.request_uri = out.reason = out.version = out.body = {};
    out.status_code = 0;
    out.header_count = 0;
    out.content_length = 0;
    out.has_content_length = false;

    if (bytes.size() > limits.max_size) return ParseStatus::TooLarge;
    const std::size_t max_headers = std::min(limits.max_headers, kHeaderCapacity);

    Lines lines{bytes.data(), bytes.data() + bytes.size()};
    std::string_view line;
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    do {
        if (!lines.next(line)) return ParseStatus::Malformed;
    } while (line.empty());
    if (has_nul(line)) return ParseStatus::Malformed;
    bool ok = (line.size() >= 4 && iequals(line.substr(0, 4), "SIP/")) ? parse_status_line(line, out)
                                                                         : parse_request_line(line, out);
    if (!ok) return ParseStatus::Malformed;

    bool bad_length = false;
    for (;;) {
        const char* header_start = lines.p;
        if (!lines.next(line)) return ParseStatus::Malformed;  // no blank line ends the head
        if (line.empty()) break;
        if (line[0] == ' ' || line[0] == '\t') return ParseStatus::Malformed;  // fold w/o header
        const char* value_end = line.data() + line.size();
        while (lines.continues()) {  // RFC 3261 §7.3.1 line folding: kept inside the value
            if (!lines.next(line)) return ParseStatus::Malformed;
            value_end = line.data() + line.size();
        }
        std::string_view header(header_start, static_cast<std::size_t>(value_end - header_start));
        if (has_nul(header)) return ParseStatus::Malformed;

        // RFC 3261 §7.3.1: field-name HCOLON field-value; HCOLON allows white space before ':'.
        std::size_t colon = header.find(':');
        if (colon == std::string_view::npos) return ParseStatus::Malformed;
        std::string_view name = header.substr(0, colon);
        while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
        if (!base::is_token(name)) return ParseStatus::Malformed;
        std::string_view value = base::trim(header.substr(colon + 1));
        HeaderId id = header_id(name);

        auto add = [&](std::string_view v) noexcept {
            if (out.header_count >= max_headers) return false;
            out.headers[out.header_count++] = Header{name, v, id};
            return true;
        };
        bool fits = (is_list_header(id) && !value.empty()) ? split_list(value, add) : add(value);
        if (!fits) return ParseStatus::TooManyHeaders;

        if (id == HeaderId::ContentLength) {
            uint32_t n = 0;
            if (!base::parse_u32(value, n)) {
                bad_length = true;
            } else if (out.has_content_length && n != out.content_length) {
                bad_length = true;  // RFC 4475 §3.1.2.7-like: two different lengths
            } else {
                out.content_length = n;
                out.has_content_length = true;
            }
        }
    }

    std::string_view rest(lines.p, static_cast<std::size_t>(lines.end - lines.p));
    if (out.has_content_length) {
        if (out.content_length > rest.size()) {
            out.body = rest;
            return ParseStatus::BadContentLength;
        }
        out.body = rest.substr(0, out.content_length);  // RFC 3261 §18.3: extra bytes discarded
    } else {
        out.body = rest;
    }
    return bad_length ? ParseStatus::BadContentLength : ParseStatus::Ok;
}

}  // namespace sipr::sip
