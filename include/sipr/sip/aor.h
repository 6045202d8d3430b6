#pragma once
// Address-of-record normalisation (DESIGN §4): the key under which bindings are stored and looked
// up.
#include <cstddef>
#include <span>
#include <string_view>

#include "sipr/sip/uri.h"

namespace sipr::sip {

inline constexpr std::size_t kMaxAorLength = 256;

enum class AorStatus : uint8_t {
    Ok,
    NoUser,             // a sip/sips URI without user part (addressed to a server)
    BadEscape,          // malformed %-escape in the user part
    NoDomain,           // a tel: URI and no default domain to map it into
    UnsupportedScheme,  // not sip, sips or tel
    TooLong,            // the result does not fit `out`
    BadUri,             // text form only: the URI does not parse
};

// Writes the AOR of `uri` into `out` and its length into `len`:
// - sip/sips: "<scheme>:<user>@<host>", scheme and host lower-cased, port, password, URI
//   parameters and headers dropped, the user part un-escaped (its case kept);
// - a telephone-number user part (user=phone, or '+' followed by digits and visual separators)
//   loses the RFC 3966 visual separators - . ( ) and anything after its first ';';
// - tel: maps to "sip:<number>@<default_domain>" with the separators stripped.
// Never writes past `out`.
[[nodiscard]] AorStatus normalize_aor(const Uri& uri, std::string_view default_domain,
                                      std::span<char> out, std::size_t& len) noexcept;

// Convenience for text: parses `uri_text` then normalises.
[[nodiscard]] AorStatus normalize_aor(std::string_view uri_text, std::string_view default_domain,
                                      std::span<char> out, std::size_t& len) noexcept;

}  // namespace sipr::sip
