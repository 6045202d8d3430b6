#pragma once
// Source-address sets written as CIDRs (--allow, DESIGN §8), and the 16-byte key a source address
// is compared and hashed under. IPv4 lives inside IPv6 as ::ffff:a.b.c.d (RFC 4291 §2.5.5.2): an
// IPv4 rule is the IPv6 range ::ffff:a.b.c.d/(96 + n), so it also matches a v4-mapped IPv6
// source, and one representation serves both families. Consequently ::/0 holds every address,
// IPv4 included, while 0.0.0.0/0 holds IPv4 (and v4-mapped) sources only.
#include <sys/socket.h>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sipr::net {

// An IPv6 address (IPv4 v4-mapped) as a 128-bit big-endian number split in two halves, so that
// ranges compare as numbers.
struct IpKey {
    uint64_t hi = 0;  // bytes 0..7 of the address
    uint64_t lo = 0;  // bytes 8..15
    // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads the defaulted <=>'s 0
    friend constexpr auto operator<=>(const IpKey&, const IpKey&) = default;
};

// The key of an AF_INET or AF_INET6 address (the port is ignored). Returns false for any other
// family. No allocation, no system call.
[[nodiscard]] bool ip_key(const sockaddr* sa, IpKey& out) noexcept;

// True for ::ffff:0:0/96, the IPv4 sources (ip_key maps AF_INET there, and a v4-mapped AF_INET6
// source is the same key).
[[nodiscard]] constexpr bool is_v4_mapped(const IpKey& k) noexcept {
    return k.hi == 0 && (k.lo >> 32) == 0xffffu;
}

// The network bits of a /prefix as a key: the first `prefix` bits set (prefix 0..128; larger
// values count as 128).
[[nodiscard]] IpKey prefix_mask(unsigned prefix) noexcept;

// The key a source is rate-limited under (--rate-limit-v6-prefix): an IPv4 source, v4-mapped
// included, is its whole address (/32); an IPv6 source is cut to `v6_mask` (prefix_mask of the
// prefix; one host usually owns a whole /64 and can send from any address in it).
[[nodiscard]] constexpr IpKey source_key(const IpKey& k, const IpKey& v6_mask) noexcept {
    if (is_v4_mapped(k)) return k;
    return IpKey{k.hi & v6_mask.hi, k.lo & v6_mask.lo};
}

// An inclusive range of keys: what one CIDR covers.
struct IpRange {
    IpKey first;
    IpKey last;
};

// Parses one CIDR: "192.0.2.0/24", "2001:db8::/32", "::ffff:192.0.2.0/120", or a bare address
// (one host: /32 or /128). Surrounding blanks are ignored. Refused, with a sentence in `why`
// naming the text and what to write instead: an address inet_pton does not take (no names, no
// brackets, no short IPv4 forms), a prefix that is not 0..32 (IPv4) or 0..128 (IPv6) in decimal,
// and bits set after the prefix ("10.1.0.0/8": usually a typo, so said rather than masked).
// Start-up code: it allocates only for `why`.
[[nodiscard]] bool parse_cidr(std::string_view text, IpRange& out, std::string& why);

// A set of CIDRs. Built at start-up (add() allocates); contains() is for the receive path: no
// allocation, no lock, no system call, a binary search over the merged ranges. Immutable after
// start-up, so it may be read from several threads.
class AddressSet {
  public:
    // Adds one CIDR (see parse_cidr). Returns "" or the sentence saying what is wrong with it.
    [[nodiscard]] std::string add(std::string_view cidr);

    [[nodiscard]] bool empty() const noexcept { return ranges_.empty(); }
    // Disjoint, non-adjacent ranges in ascending order (overlapping and adjacent CIDRs merged).
    [[nodiscard]] const std::vector<IpRange>& ranges() const noexcept { return ranges_; }

    [[nodiscard]] bool contains(const IpKey& key) const noexcept;
    // False for a family other than AF_INET / AF_INET6.
    [[nodiscard]] bool contains(const sockaddr* sa) const noexcept;

  private:
    std::vector<IpRange> ranges_;
};

}  // namespace sipr::net
