#pragma once
// A contact binding of an AOR and its packed form in Redis (DESIGN §6).
//
// Packed form, version 1: fields joined by US (0x1f), in this order so the registrar's Lua script
// can read the first five without parsing the rest:
//   "1" expires_at_ms updated_at_ms cseq call_id contact q path received user_agent instance reg_id
// q is in thousandths; reg_id is "" when absent. Free-text fields never contain 0x1f (replaced by
// '?' when packing). Anything else is garbage and unpack rejects it.
#include <cstdint>
#include <string>
#include <string_view>

namespace sipr::location {

inline constexpr char kFieldSep = '\x1f';
inline constexpr std::string_view kPackVersion = "1";

// Views of one packed binding; valid as long as the packed bytes are.
struct BindingView {
    int64_t expires_at_ms = 0;
    int64_t updated_at_ms = 0;
    uint32_t cseq = 0;
    std::string_view call_id;
    std::string_view contact;   // the contact URI, without '<' '>'
    uint16_t q = 1000;          // thousandths
    std::string_view path;      // Path header values joined by ", " (RFC 3327), "" if none
    std::string_view received;  // source "ip:port" of the REGISTER ("[v6]:port")
    std::string_view user_agent;
    std::string_view instance;  // +sip.instance, "" if none
    bool has_reg_id = false;
    uint32_t reg_id = 0;
};

// An owning binding, as the registrar builds it.
struct Binding {
    int64_t expires_at_ms = 0;
    int64_t updated_at_ms = 0;
    uint32_t cseq = 0;
    std::string call_id;
    std::string contact;
    uint16_t q = 1000;
    std::string path;
    std::string received;
    std::string user_agent;
    std::string instance;
    bool has_reg_id = false;
    uint32_t reg_id = 0;
};

// Parses a packed binding. Returns false (and leaves `out` unspecified) on anything that is not a
// well-formed version-1 binding: wrong field count, unknown version, non-numeric numbers, q > 1000.
[[nodiscard]] bool unpack_binding(std::string_view packed, BindingView& out) noexcept;

// The packed form of `b`.
[[nodiscard]] std::string pack_binding(const Binding& b);

// The packed fields after updated_at_ms (cseq onwards): what the registrar sends to the Lua
// script, which prefixes version, expires_at and updated_at computed from Redis TIME.
[[nodiscard]] std::string pack_binding_tail(const Binding& b);

// Where a contact URI's case-insensitive parts are (found by the SIP parser: registrar.h's
// contact_key, which every writer of bindings goes through).
struct ContactUri {
    std::string_view text;       // the URI as written
    std::size_t scheme_len = 0;  // text[0, scheme_len) is the scheme
    std::size_t host_at = 0;     // text[host_at, host_at + host_len) is the host
    std::size_t host_len = 0;
};

// The hash field of a binding (DESIGN §6): the +sip.instance when present (RFC 5626: instance and
// reg-id identify the flow; we key by instance alone as §6 says), else the contact URI with its
// scheme and host lower-cased and the rest as written (RFC 3261 §19.1.4 compares those two
// case-insensitively).
[[nodiscard]] std::string binding_key(const ContactUri& contact, std::string_view instance);

// An owning copy of a view.
[[nodiscard]] Binding to_binding(const BindingView& v);

}  // namespace sipr::location
