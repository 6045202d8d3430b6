#pragma once
// SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), parsed into views of the text. %-escapes are
// kept as written; unescape() decodes into a caller buffer.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace sipr::sip {

enum class Scheme : uint8_t { Sip, Sips, Tel, Other };

struct Uri {
    Scheme scheme = Scheme::Other;
    std::string_view scheme_text;  // as written, e.g. "SIP"
    std::string_view user;         // sip/sips: user part (escaped); tel: the number
    std::string_view password;     // sip/sips only
    std::string_view host;         // IPv6 references keep their brackets: "[2001:db8::1]"
    uint16_t port = 0;             // 0 when absent
    bool has_port = false;
    bool host_is_ipv6 = false;
    std::string_view params;   // after the first ';' up to '?' (sip) or the end (tel), no ';'
    std::string_view headers;  // after '?', no '?'
};

enum class UriStatus : uint8_t {
    Ok,
    Malformed,          // a known scheme whose rest does not parse
    UnsupportedScheme,  // syntactically a URI, but not sip, sips or tel; scheme_text is set
};

// Parses `text` (no surrounding white space or angle brackets). On Ok every view of `out` points
// into `text`.
[[nodiscard]] UriStatus parse_uri(std::string_view text, Uri& out) noexcept;

// Parses host [":" port] at the start of `s` (hostname, IPv4 or bracketed IPv6 reference) into
// out.host / out.port / out.has_port / out.host_is_ipv6. Returns the number of bytes consumed, 0
// when `s` does not start with a host or the port is out of range.
[[nodiscard]] std::size_t parse_hostport(std::string_view s, Uri& out) noexcept;

// Decodes %-escapes of `in` into `out`. Returns the decoded length, or -1 when `out` is too small
// or an escape is malformed (not two hex digits). Never writes past `out`.
[[nodiscard]] std::ptrdiff_t unescape(std::string_view in, std::span<char> out) noexcept;

// URI equivalence after RFC 3261 §19.1.4, simplified: scheme and host compare case-insensitively,
// the user part (after un-escaping) and password exactly, the port as written (absent differs from
// 5060), parameters and headers case-insensitively as whole strings. Text that does not parse as a
// SIP, SIPS or tel URI compares byte for byte.
[[nodiscard]] bool uri_equivalent(std::string_view a, std::string_view b) noexcept;

// Iterates ";name=value;name" parameter lists (URI, Via, Contact, To/From parameters). White space
// around names, '=' and values is skipped; a quoted value keeps its quotes.
class ParamIterator {
  public:
    explicit ParamIterator(std::string_view params) noexcept : rest_(params) {}
    // Advances to the next parameter; false at the end. A parameter without '=' gets an empty
    // value and has_value false.
    bool next(std::string_view& name, std::string_view& value, bool& has_value) noexcept;

  private:
    std::string_view rest_;
};

// Looks up `name` (case-insensitive) in a parameter list. Returns true when present; `value` gets
// its value ("" for a parameter without '=').
[[nodiscard]] bool find_param(std::string_view params, std::string_view name,
                              std::string_view& value) noexcept;
[[nodiscard]] bool has_param(std::string_view params, std::string_view name) noexcept;

}  // namespace sipr::sip
