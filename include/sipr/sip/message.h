#pragma once
// The SIP message model and its parser. The parser never allocates and never copies: every view in
// a Message points into the bytes it was parsed from, which the caller keeps alive and unchanged
// for as long as it uses the Message.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sipr/sip/method.h"

namespace sipr::sip {

// Headers the services care about get an id; the rest are kept as raw name/value pairs (Other).
enum class HeaderId : uint8_t {
    Other,
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    Expires,
    Require,
    ProxyRequire,
    Supported,
    Unsupported,
    ContentLength,
    ContentType,
    ContentEncoding,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    Route,
    RecordRoute,
    Path,
    Allow,
    Subject,
    Event,
    AllowEvents,
    ReferTo,
    ReferredBy,
    SessionExpires,
    Identity,
    UserAgent,
    MinExpires,
    RetryAfter,
    Date,
    kCount,
};

// Resolves a header name, long or compact form (RFC 3261 §7.3.3 and the compact forms registered
// since: i m e l c f s k t v o u r b x y), case-insensitively.
[[nodiscard]] HeaderId header_id(std::string_view name) noexcept;

// True for headers whose values form a comma-separated list that the parser splits into one
// Header entry per element (Via, Contact, Route, Record-Route, Path, Require, Proxy-Require,
// Supported, Unsupported, Allow).
[[nodiscard]] bool is_list_header(HeaderId id) noexcept;

// One header value. For list headers one entry per element, in order. `value` is trimmed of
// surrounding white space; it may contain a folded line break (CRLF followed by SP/HT), which the
// typed parsers treat as white space.
struct Header {
    std::string_view name;
    std::string_view value;
    HeaderId id = HeaderId::Other;
};

inline constexpr std::size_t kHeaderCapacity = 128;

struct ParseLimits {
    std::size_t max_size = 65535;  // bytes in one message
    std::size_t max_headers = 96;  // header entries after list splitting; clamped to capacity
};

enum class ParseStatus : uint8_t {
    Ok,
    Malformed,         // framing broken: start line, header line or NUL byte; nothing to answer
    TooLarge,          // more bytes than ParseLimits::max_size; nothing was parsed
    TooManyHeaders,    // more header entries than ParseLimits::max_headers; the start line and
                       // the headers kept (no NUL in them) are valid
    BadContentLength,  // Content-Length unparsable, duplicated with another value, or beyond the
                       // datagram; start line and every header are valid, so a 400 can be formed
    BareCr,            // a CR not followed by LF in the head (a header smuggled past a naive
                       // reader, or echoed into a response). Start line and headers are framed and
                       // those a response copies (Via, From, To, Call-ID, CSeq) hold no bare CR,
                       // so a 400 can be formed; never echo any other header. A bare CR in the
                       // start line or in a copied header is Malformed instead.
};

// A parsed request or response.
struct Message {
    bool is_request = false;
    // Request line.
    Method method = Method::Unknown;
    std::string_view method_name;
    std::string_view request_uri;
    // Status line.
    uint16_t status_code = 0;
    std::string_view reason;
    std::string_view version;  // "SIP/2.0"

    std::array<Header, kHeaderCapacity> headers{};
    std::size_t header_count = 0;
    std::string_view body;
    uint32_t content_length = 0;
    bool has_content_length = false;

    // The first header with this id, or nullptr.
    [[nodiscard]] const Header* find(HeaderId id) const noexcept;
    // The first header with this name (case-insensitive; compact forms resolved), or nullptr.
    [[nodiscard]] const Header* find(std::string_view name) const noexcept;
    // How many header entries carry this id.
    [[nodiscard]] std::size_t count(HeaderId id) const noexcept;
};

// Parses one SIP message held in `bytes` (a whole UDP datagram). On Ok, TooManyHeaders,
// BadContentLength and BareCr the start line in `out` is valid; on Ok and BadContentLength every
// header is too (on BareCr see there). Every view in `out` points into `bytes`. Lines may end in
// CRLF or a bare LF (a lone LF ends a line, so no value ever holds a line break other than a
// fold, CRLF or LF followed by SP/HT); a CR anywhere else in the head is BareCr or Malformed, and a
// NUL there is Malformed. With a Content-Length
// the body is exactly that many bytes (extra datagram bytes are ignored, RFC 3261 §18.3); without
// one it is the rest of the datagram.
[[nodiscard]] ParseStatus parse_message(std::string_view bytes, Message& out,
                                        const ParseLimits& limits = {}) noexcept;

// Short, fixed text for a status: "ok", "malformed", ...
[[nodiscard]] std::string_view parse_status_text(ParseStatus s) noexcept;

}  // namespace sipr::sip
