#include "sipr/location/binding.h"

#include "sipr/base/ascii.h"

#include <array>
#include <charconv>
#include <cstring>

namespace sipr::location {

namespace {

constexpr std::size_t kFields = 12;

bool to_i64(std::string_view s, int64_t& out) noexcept {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size() && out >= 0;
}

bool to_u32(std::string_view s, uint32_t& out) noexcept {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

void append_field(std::string& out, std::string_view v) {
    out += kFieldSep;
    for (char c : v) out += (c == kFieldSep) ? '?' : c;
}

}  // namespace

bool unpack_binding(std::string_view packed, BindingView& out) noexcept {
    if (packed.empty()) return false;
    std::array<std::string_view, kFields> f;
    std::size_t n = 0;
    const char* p = packed.data();
    const char* end = p + packed.size();
    for (;;) {  // memchr per field: a look-up unpacks every binding of the AOR
        const auto* sep =
            static_cast<const char*>(std::memchr(p, kFieldSep, static_cast<std::size_t>(end - p)));
        if (n == kFields) return false;
        f[n++] = std::string_view(p, static_cast<std::size_t>((sep != nullptr ? sep : end) - p));
        if (sep == nullptr) break;
        p = sep + 1;
    }
    if (n != kFields || f[0] != kPackVersion) return false;
    uint32_t q = 0;
    if (!to_i64(f[1], out.expires_at_ms) || !to_i64(f[2], out.updated_at_ms) ||
        !to_u32(f[3], out.cseq) || !to_u32(f[6], q) || q > 1000 || f[5].empty())
        return false;
    out.q = static_cast<uint16_t>(q);
    out.call_id = f[4];
    out.contact = f[5];
    out.path = f[7];
    out.received = f[8];
    out.user_agent = f[9];
    out.instance = f[10];
    out.has_reg_id = !f[11].empty();
    out.reg_id = 0;
    return !out.has_reg_id || to_u32(f[11], out.reg_id);
}

std::string pack_binding_tail(const Binding& b) {
    std::string out = std::to_string(b.cseq);
    append_field(out, b.call_id);
    append_field(out, b.contact);
    append_field(out, std::to_string(b.q));
    append_field(out, b.path);
    append_field(out, b.received);
    append_field(out, b.user_agent);
    append_field(out, b.instance);
    append_field(out, b.has_reg_id ? std::to_string(b.reg_id) : std::string());
    return out;
}

std::string pack_binding(const Binding& b) {
    std::string out(kPackVersion);
    out += kFieldSep;
    out += std::to_string(b.expires_at_ms);
    out += kFieldSep;
    out += std::to_string(b.updated_at_ms);
    out += kFieldSep;
    out += pack_binding_tail(b);
    return out;
}

std::string binding_key(const ContactUri& contact, std::string_view instance) {
    if (!instance.empty()) return std::string(instance);
    std::string key(contact.text);
    const std::size_t host_end = contact.host_at + contact.host_len;
    for (std::size_t i = 0; i < key.size(); ++i)
        if (i < contact.scheme_len || (i >= contact.host_at && i < host_end))
            key[i] = base::to_lower(key[i]);
    return key;
}

Binding to_binding(const BindingView& v) {
    Binding b;
    b.expires_at_ms = v.expires_at_ms;
    b.updated_at_ms = v.updated_at_ms;
    b.cseq = v.cseq;
    b.call_id = v.call_id;
    b.contact = v.contact;
    b.q = v.q;
    b.path = v.path;
    b.received = v.received;
    b.user_agent = v.user_agent;
    b.instance = v.instance;
    b.has_reg_id = v.has_reg_id;
    b.reg_id = v.reg_id;
    return b;
}

}  // namespace sipr::location
