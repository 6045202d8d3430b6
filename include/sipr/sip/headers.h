#pragma once
// Typed parsers for the header values the services use. Each takes one header value (one element
// of a list header, as Message stores it) and fills a struct of views into it. None allocates.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "sipr/sip/message.h"
#include "sipr/sip/method.h"
#include "sipr/sip/uri.h"

namespace sipr::sip {

// name-addr or addr-spec with header parameters (From, To, Contact, Route, Path, ...).
struct NameAddr {
    std::string_view display_name;  // without quotes; quoted-pair escapes kept as written
    bool display_quoted = false;
    std::string_view uri_text;  // without '<' '>'
    Uri uri;
    UriStatus uri_status = UriStatus::Malformed;
    bool angle_brackets = false;
    std::string_view params;  // header parameters after the address, without the first ';'
};

// Parses a name-addr / addr-spec. Returns false when the value is not one (unterminated quote or
// '<', garbage after '>', empty URI). A URI with an unsupported scheme still parses: see
// uri_status. In addr-spec form, everything after the first ';' is a header parameter (RFC 3261
// §20).
[[nodiscard]] bool parse_name_addr(std::string_view value, NameAddr& out) noexcept;

// Decodes a quoted display name's quoted-pairs into `out`. Returns the length, or -1 if it does
// not fit.
[[nodiscard]] std::ptrdiff_t unquote(std::string_view quoted_content, std::span<char> out) noexcept;

// From / To: a NameAddr with its tag.
struct FromTo {
    NameAddr addr;
    std::string_view tag;  // "" when absent
};
[[nodiscard]] bool parse_from_to(std::string_view value, FromTo& out) noexcept;

// One Via element (RFC 3261 §20.42, RFC 3581).
struct Via {
    std::string_view protocol;   // "SIP"
    std::string_view version;    // "2.0"
    std::string_view transport;  // "UDP"
    std::string_view host;       // IPv6 references keep their brackets
    uint16_t port = 0;
    bool has_port = false;
    std::string_view branch;
    std::string_view received;
    std::string_view maddr;
    bool has_rport = false;
    std::string_view rport;   // "" when the parameter has no value
    std::string_view params;  // every parameter, without the first ';'
};
[[nodiscard]] bool parse_via(std::string_view value, Via& out) noexcept;

// One Contact element (RFC 3261 §20.10, RFC 5626 §4.1).
struct Contact {
    bool star = false;
    NameAddr addr;  // unset for '*'
    bool has_q = false;
    uint16_t q = 1000;  // q-value in thousandths, 0..1000
    bool has_expires = false;
    uint32_t expires = 0;       // clamped to 2^32-1 as RFC 3261 §20.19 allows
    std::string_view instance;  // +sip.instance, without the surrounding quotes
    bool has_reg_id = false;
    uint32_t reg_id = 0;
    std::string_view params;  // every header parameter, known ones included
};
// Fails on a malformed address, a q outside 0..1 with at most 3 decimals, a non-numeric expires or
// reg-id.
[[nodiscard]] bool parse_contact(std::string_view value, Contact& out) noexcept;

struct CSeq {
    uint32_t number = 0;  // < 2^31 (RFC 3261 §8.1.1.5)
    Method method = Method::Unknown;
    std::string_view method_text;
};
[[nodiscard]] bool parse_cseq(std::string_view value, CSeq& out) noexcept;

// Max-Forwards: 0..255.
[[nodiscard]] bool parse_max_forwards(std::string_view value, uint32_t& out) noexcept;

// Expires / Min-Expires delta-seconds; values beyond 2^32-1 clamp to 2^32-1 (RFC 3261 §20.19).
[[nodiscard]] bool parse_expires(std::string_view value, uint32_t& out) noexcept;

// Option tags: true when any header with `id` (Require, Supported, ...) lists `tag`
// (case-insensitive). Each element of those headers is one tag.
[[nodiscard]] bool has_option_tag(const Message& m, HeaderId id, std::string_view tag) noexcept;

// True when every element of the headers with `id` is one option tag, a token (RFC 3261 §20.32:
// Require = "Require" HCOLON option-tag *(COMMA option-tag)), blanks around it aside. An answer
// that lists the tags (420's Unsupported) echoes only such elements: never a fold or other bytes.
[[nodiscard]] bool option_tags_valid(const Message& m, HeaderId id) noexcept;

// Digest credentials of an Authorization / Proxy-Authorization value (RFC 3261 §22.4, RFC 7616).
// Quoted values are returned without their quotes.
struct DigestCredentials {
    std::string_view username;
    std::string_view realm;
    std::string_view nonce;
    std::string_view uri;
    std::string_view response;
    std::string_view algorithm;  // "" means MD5
    std::string_view cnonce;
    std::string_view opaque;
    std::string_view qop;
    std::string_view nc;
};
// Fails when the scheme is not Digest, on a malformed parameter list, or a missing username,
// realm, nonce, uri or response.
[[nodiscard]] bool parse_digest_credentials(std::string_view value,
                                            DigestCredentials& out) noexcept;

}  // namespace sipr::sip
