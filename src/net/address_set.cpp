#include "sipr/net/address_set.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "sipr/base/ascii.h"

namespace sipr::net {

namespace {

// ::ffff:0:0/96, RFC 4291 §2.5.5.2: the IPv4 addresses inside IPv6.
constexpr uint64_t kMappedPrefix = 0x0000ffff00000000ull;

uint64_t load_be64(const unsigned char* p) noexcept {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
    return v;
}

void store_be64(uint64_t v, unsigned char* p) noexcept {
    for (int i = 7; i >= 0; --i) {
        p[i] = static_cast<unsigned char>(v);
        v >>= 8;
    }
}

// The host bits of a /prefix (0..128) as a key: the bits after the prefix set.
IpKey host_mask(unsigned prefix) noexcept {
    IpKey m;
    if (prefix < 64) {
        m.hi = prefix == 0 ? ~0ull : ~0ull >> prefix;
        m.lo = ~0ull;
    } else {
        m.hi = 0;
        m.lo = prefix == 128 ? 0 : ~0ull >> (prefix - 64);
    }
    return m;
}

bool is_blank(char c) noexcept {
    return c == ' ' || c == '\t';
}

// "192.0.2.0" for a v4-mapped key, "2001:db8::" otherwise (start-up messages only).
std::string format_key(const IpKey& k, bool v4) {
    char text[INET6_ADDRSTRLEN] = {};
    if (v4) {
        in_addr a{};
        a.s_addr = htonl(static_cast<uint32_t>(k.lo));
        inet_ntop(AF_INET, &a, text, sizeof text);
    } else {
        in6_addr a{};
        store_be64(k.hi, a.s6_addr);
        store_be64(k.lo, a.s6_addr + 8);
        inet_ntop(AF_INET6, &a, text, sizeof text);
    }
    return text;
}

}  // namespace

bool ip_key(const sockaddr* sa, IpKey& out) noexcept {
    if (sa->sa_family == AF_INET) {
        const auto* b = reinterpret_cast<const unsigned char*>(
            &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr);
        out.hi = 0;
        out.lo = kMappedPrefix | uint64_t{b[0]} << 24 | uint64_t{b[1]} << 16 | uint64_t{b[2]} << 8 |
                 uint64_t{b[3]};
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const unsigned char* b = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr.s6_addr;
        out.hi = load_be64(b);
        out.lo = load_be64(b + 8);
        return true;
    }
    return false;
}

IpKey prefix_mask(unsigned prefix) noexcept {
    const IpKey host = host_mask(prefix > 128 ? 128 : prefix);
    return IpKey{~host.hi, ~host.lo};
}

bool parse_cidr(std::string_view text, IpRange& out, std::string& why) {
    while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
    std::string quoted(1, '\'');  // appended, not "'" + ...: GCC 12 warns falsely (-Wrestrict)
    quoted.append(text);
    quoted += '\'';
    const std::string_view example = " (write a CIDR such as 192.0.2.0/24 or 2001:db8::/32)";
    std::size_t slash = text.find('/');
    std::string_view addr_text = text.substr(0, slash);
    char buf[INET6_ADDRSTRLEN + 1];
    if (addr_text.empty() || addr_text.size() >= sizeof buf) {
        why = quoted + " is not an IPv4 or IPv6 address" + std::string(example);
        return false;
    }
    std::memcpy(buf, addr_text.data(), addr_text.size());
    buf[addr_text.size()] = '\0';

    IpKey key;
    bool v4 = false;
    in_addr a4{};
    in6_addr a6{};
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        v4 = true;
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr = a4;
        (void)ip_key(reinterpret_cast<const sockaddr*>(&sa), key);
    } else if (inet_pton(AF_INET6, buf, &a6) == 1) {
        key.hi = load_be64(a6.s6_addr);
        key.lo = load_be64(a6.s6_addr + 8);
    } else {
        why = quoted + " is not an IPv4 or IPv6 address" + std::string(example);
        return false;
    }

    const uint32_t max_prefix = v4 ? 32 : 128;
    uint32_t prefix = max_prefix;
    if (slash != std::string_view::npos) {
        std::string_view p = text.substr(slash + 1);
        if (!base::parse_u32(p, prefix, max_prefix) || p.size() > 3) {
            why = quoted + " has a bad prefix length: want 0.." + std::to_string(max_prefix) +
                  " after the '/'" + std::string(example);
            return false;
        }
    }
    const unsigned bits = v4 ? 96 + prefix : prefix;  // in the IPv6 space
    const IpKey host = host_mask(bits);
    if ((key.hi & host.hi) != 0 || (key.lo & host.lo) != 0) {
        IpKey net{key.hi & ~host.hi, key.lo & ~host.lo};
        why = quoted + " has bits set after the /" + std::to_string(prefix) + " prefix: write " +
              format_key(net, v4) + "/" + std::to_string(prefix) +
              " for the network, or a longer prefix";
        return false;
    }
    out.first = key;
    out.last = IpKey{key.hi | host.hi, key.lo | host.lo};
    return true;
}

std::string AddressSet::add(std::string_view cidr) {
    IpRange r;
    std::string why;
    if (!parse_cidr(cidr, r, why)) return why;
    ranges_.push_back(r);
    std::sort(ranges_.begin(), ranges_.end(),
              [](const IpRange& a, const IpRange& b) { return a.first < b.first; });
    // Merge overlapping and adjacent ranges, so that contains() needs one comparison at the end.
    std::vector<IpRange> merged;
    for (const IpRange& x : ranges_) {
        if (!merged.empty()) {
            IpRange& m = merged.back();
            IpKey next = m.last;  // m.last + 1, unless m.last is the very last address
            bool at_end = next.hi == ~0ull && next.lo == ~0ull;
            if (!at_end) {
                if (++next.lo == 0) ++next.hi;
            }
            if (at_end || x.first <= next) {
                if (m.last < x.last) m.last = x.last;
                continue;
            }
        }
        merged.push_back(x);
    }
    ranges_ = std::move(merged);
    return {};
}

bool AddressSet::contains(const IpKey& key) const noexcept {
    // The last range starting at or before `key`.
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), key,
                               [](const IpKey& k, const IpRange& r) { return k < r.first; });
    if (it == ranges_.begin()) return false;
    return key <= std::prev(it)->last;
}

bool AddressSet::contains(const sockaddr* sa) const noexcept {
    IpKey k;
    return ip_key(sa, k) && contains(k);
}

}  // namespace sipr::net
