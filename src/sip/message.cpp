#include "sipr/sip/message.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "sipr/base/ascii.h"

namespace sipr::sip {

using base::iequals;
using base::to_lower;

namespace {

constexpr std::size_t kMaxNameWords = 3;  // names up to 24 bytes

struct NameKey {
    uint64_t word[kMaxNameWords] = {};
    uint64_t mask[kMaxNameWords] = {};
    std::size_t length = 0;
    HeaderId id = HeaderId::Other;
};

constexpr NameKey make_key(std::string_view lower, HeaderId id) {
    NameKey k;
    k.length = lower.size();
    k.id = id;
    for (std::size_t i = 0; i < lower.size(); ++i) {
        auto c = static_cast<uint64_t>(static_cast<unsigned char>(lower[i]));
        k.word[i / 8] |= c << (8 * (i % 8));  // little-endian, as memcpy loads it
        if (lower[i] >= 'a' && lower[i] <= 'z') k.mask[i / 8] |= uint64_t{0x20} << (8 * (i % 8));
    }
    return k;
}

// Sorted by length (kByLength indexes the runs).
constexpr NameKey kNameKeys[] = {
    make_key("to", HeaderId::To),
    make_key("via", HeaderId::Via),
    make_key("from", HeaderId::From),
    make_key("cseq", HeaderId::CSeq),
    make_key("path", HeaderId::Path),
    make_key("date", HeaderId::Date),
    make_key("route", HeaderId::Route),
    make_key("allow", HeaderId::Allow),
    make_key("event", HeaderId::Event),
    make_key("call-id", HeaderId::CallId),
    make_key("contact", HeaderId::Contact),
    make_key("expires", HeaderId::Expires),
    make_key("require", HeaderId::Require),
    make_key("subject", HeaderId::Subject),
    make_key("identity", HeaderId::Identity),
    make_key("refer-to", HeaderId::ReferTo),
    make_key("supported", HeaderId::Supported),
    make_key("user-agent", HeaderId::UserAgent),
    make_key("unsupported", HeaderId::Unsupported),
    make_key("referred-by", HeaderId::ReferredBy),
    make_key("min-expires", HeaderId::MinExpires),
    make_key("retry-after", HeaderId::RetryAfter),
    make_key("max-forwards", HeaderId::MaxForwards),
    make_key("content-type", HeaderId::ContentType),
    make_key("record-route", HeaderId::RecordRoute),
    make_key("allow-events", HeaderId::AllowEvents),
    make_key("authorization", HeaderId::Authorization),
    make_key("proxy-require", HeaderId::ProxyRequire),
    make_key("content-length", HeaderId::ContentLength),
    make_key("session-expires", HeaderId::SessionExpires),
    make_key("content-encoding", HeaderId::ContentEncoding),
    make_key("www-authenticate", HeaderId::WwwAuthenticate),
    make_key("proxy-authorization", HeaderId::ProxyAuthorization),
};

struct Run {
    std::size_t begin = 0;
    std::size_t end = 0;
};

constexpr auto kByLength = [] {
    std::array<Run, kMaxNameWords * 8 + 1> runs{};
    std::size_t n = sizeof kNameKeys / sizeof kNameKeys[0];
    for (std::size_t i = 0; i < n; ++i) {
        std::size_t len = kNameKeys[i].length;
        if (runs[len].end == 0) runs[len].begin = i;
        runs[len].end = i + 1;
    }
    return runs;
}();

}  // namespace

HeaderId header_id(std::string_view n) noexcept {
    if (n.empty()) return HeaderId::Other;
    if (n.size() == 1) {
        // Compact forms, RFC 3261 §7.3.3 and the registrations that followed it.
        switch (to_lower(n[0])) {
            case 'i':
                return HeaderId::CallId;
            case 'm':
                return HeaderId::Contact;
            case 'e':
                return HeaderId::ContentEncoding;
            case 'l':
                return HeaderId::ContentLength;
            case 'c':
                return HeaderId::ContentType;
            case 'f':
                return HeaderId::From;
            case 's':
                return HeaderId::Subject;
            case 'k':
                return HeaderId::Supported;
            case 't':
                return HeaderId::To;
            case 'v':
                return HeaderId::Via;
            case 'o':
                return HeaderId::Event;  // RFC 6665
            case 'u':
                return HeaderId::AllowEvents;  // RFC 6665
            case 'r':
                return HeaderId::ReferTo;  // RFC 3515
            case 'b':
                return HeaderId::ReferredBy;  // RFC 3892
            case 'x':
                return HeaderId::SessionExpires;  // RFC 4028
            case 'y':
                return HeaderId::Identity;  // RFC 8224
            default:
                return HeaderId::Other;
        }
    }
    // Full names: compared as up to three 64-bit words. A letter position compares
    // case-insensitively (its 0x20 bit is forced on), every other position exactly.
    if (n.size() > kMaxNameWords * 8) return HeaderId::Other;
    uint64_t w[kMaxNameWords] = {};
    std::memcpy(w, n.data(), n.size());
    const auto [begin, end] = kByLength[n.size()];
    for (std::size_t k = begin; k < end; ++k) {
        const NameKey& key = kNameKeys[k];
        bool eq = true;
        for (std::size_t i = 0; i < kMaxNameWords; ++i) eq &= (w[i] | key.mask[i]) == key.word[i];
        if (eq) return key.id;
    }
    return HeaderId::Other;
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
        case ParseStatus::Ok:
            return "ok";
        case ParseStatus::Malformed:
            return "malformed";
        case ParseStatus::TooLarge:
            return "too large";
        case ParseStatus::TooManyHeaders:
            return "too many headers";
        case ParseStatus::BadContentLength:
            return "bad content-length";
        case ParseStatus::BareCr:
            return "bare CR";
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

bool has_nul(std::string_view s) noexcept {
    return std::memchr(s.data(), '\0', s.size()) != nullptr;
}

// True when `head` holds no NUL and every CR in it is followed by LF: the one check of the head's
// bytes on the hot path. One pass, 16 bytes at a time with GCC/Clang vector extensions (SSE2 on
// x86-64, NEON on arm64), each block compared with itself shifted by one byte; the last block
// overlaps the one before, so only the very last byte is looked at alone. Reads nothing outside
// `head`.
bool head_bytes_clean(std::string_view head) noexcept {
    using Block = unsigned char __attribute__((vector_size(16)));
    constexpr std::size_t kBlock = sizeof(Block);
    const auto* b = reinterpret_cast<const unsigned char*>(head.data());
    const std::size_t n = head.size();
    if (n == 0) return true;
    const unsigned char last = b[n - 1];
    if (last == 0 || last == '\r') return false;
    if (n <= kBlock) {
        for (std::size_t i = 0; i + 1 < n; ++i)
            if (b[i] == 0 || (b[i] == '\r' && b[i + 1] != '\n')) return false;
        return true;
    }
    // Blocks at 0, 16, ..., and one ending at n - 2 (its shifted twin ends at n - 1).
    Block bad{};
    auto check = [&](std::size_t at) {
        Block cur, next;
        std::memcpy(&cur, b + at, kBlock);
        std::memcpy(&next, b + at + 1, kBlock);
        bad |= reinterpret_cast<Block>(((cur == '\r') & (next != '\n')) | (cur == 0));
    };
    for (std::size_t at = 0; at + kBlock < n - 1; at += kBlock) check(at);
    check(n - 1 - kBlock);
    uint64_t words[2];
    std::memcpy(words, &bad, sizeof words);
    return (words[0] | words[1]) == 0;
}

// True when `v` holds a CR that is not followed by LF inside `v` (a fold, CRLF SP, is fine).
bool has_bare_cr(std::string_view v) noexcept {
    for (std::size_t i = v.find('\r'); i != std::string_view::npos; i = v.find('\r', i + 1))
        if (i + 1 >= v.size() || v[i + 1] != '\n') return true;
    return false;
}

// The headers every response copies from its request (RFC 3261 §8.2.6.2): a bare CR in one of
// them leaves nothing that can be answered without echoing it.
bool is_copied_header(HeaderId id) noexcept {
    return id == HeaderId::Via || id == HeaderId::From || id == HeaderId::To ||
           id == HeaderId::CallId || id == HeaderId::CSeq;
}

// A head with a bare CR somewhere: Malformed when it is in the start line or in a header a
// response copies, else BareCr (a 400 can be formed). Only reached on such a head.
ParseStatus classify_bare_cr(const Message& m) noexcept {
    // A request line with a CR fails its own checks; a status line's reason phrase may hold one.
    if (has_bare_cr(m.reason)) return ParseStatus::Malformed;
    for (std::size_t i = 0; i < m.header_count; ++i)
        if (is_copied_header(m.headers[i].id) && has_bare_cr(m.headers[i].value))
            return ParseStatus::Malformed;
    return ParseStatus::BareCr;
}

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
    // Fast paths: most list values have no comma at all (one Via, one Contact), or commas but no
    // quotes or brackets (Allow, Supported).
    const std::size_t comma = v.find(',');
    if (comma == std::string_view::npos) return emit(v);
    if (v.find_first_of("\"<") == std::string_view::npos) {
        std::size_t start = 0;
        for (std::size_t c = comma;; c = v.find(',', start)) {
            std::size_t end = c == std::string_view::npos ? v.size() : c;
            std::string_view el = base::trim(v.substr(start, end - start));
            if (!el.empty() && !emit(el)) return false;
            if (c == std::string_view::npos) return true;
            start = c + 1;
        }
    }
    bool in_quote = false;
    int angle = 0;
    std::size_t start = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
        char c = v[i];
        if (in_quote) {
            if (c == '\\')
                ++i;  // quoted-pair
            else if (c == '"')
                in_quote = false;
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
    return el.empty() || emit(el);
}

}  // namespace

ParseStatus parse_message(std::string_view bytes, Message& out,
                          const ParseLimits& limits) noexcept {
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
    bool ok = (line.size() >= 4 && iequals(line.substr(0, 4), "SIP/"))
                  ? parse_status_line(line, out)
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
        if (!fits) {
            // The headers kept so far must be as clean as a whole head would be (a bare CR here
            // is a drop: TooManyHeaders promises clean headers, and the case is rare enough).
            std::string_view seen(bytes.data(), static_cast<std::size_t>(lines.p - bytes.data()));
            return head_bytes_clean(seen) ? ParseStatus::TooManyHeaders : ParseStatus::Malformed;
        }

        if (id == HeaderId::ContentLength) {
            uint32_t n = 0;
            // Unparsable, or a second, different length (RFC 4475 §3.1.2.7-like).
            if (!base::parse_u32(value, n) || (out.has_content_length && n != out.content_length)) {
                bad_length = true;
            } else {
                out.content_length = n;
                out.has_content_length = true;
            }
        }
    }

    // One scan of the whole head for NUL bytes (RFC 3261 never allows them there) and for a CR
    // that ends no line (RFC 3261 §7.3.1 allows CR only in CRLF): that would let a value carry a
    // line break past us into a response that echoes it, so it is never Ok.
    std::string_view head(bytes.data(), static_cast<std::size_t>(lines.p - bytes.data()));
    ParseStatus status = ParseStatus::Ok;
    if (!head_bytes_clean(head)) {
        if (has_nul(head)) return ParseStatus::Malformed;
        status = classify_bare_cr(out);
        if (status == ParseStatus::Malformed) return status;
    }

    std::string_view rest(lines.p, static_cast<std::size_t>(lines.end - lines.p));
    if (out.has_content_length) {
        if (out.content_length > rest.size()) {
            out.body = rest;
            return status == ParseStatus::Ok ? ParseStatus::BadContentLength : status;
        }
        out.body = rest.substr(0, out.content_length);  // RFC 3261 §18.3: extra bytes discarded
    } else {
        out.body = rest;
    }
    if (status != ParseStatus::Ok) return status;
    return bad_length ? ParseStatus::BadContentLength : ParseStatus::Ok;
}

}  // namespace sipr::sip
