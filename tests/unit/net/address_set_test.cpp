// net::AddressSet and parse_cidr (--allow): the ranges a CIDR covers, IPv4 inside IPv6 as
// ::ffff:a.b.c.d, the edges (/0, /32, /128, the first and last address of a range), merging, and
// the refusals with a sentence an operator can act on. Checked against a naive matcher too.
#include "sipr/net/address_set.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

using sipr::net::AddressSet;
using sipr::net::IpKey;
using sipr::net::IpRange;

namespace {

sockaddr_storage addr(const char* ip, uint16_t port = 5060) {
    sockaddr_storage ss{};
    if (std::strchr(ip, ':') != nullptr) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        REQUIRE(inet_pton(AF_INET6, ip, &a->sin6_addr) == 1);
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        REQUIRE(inet_pton(AF_INET, ip, &a->sin_addr) == 1);
    }
    return ss;
}

IpKey key(const char* ip) {
    sockaddr_storage ss = addr(ip);
    IpKey k;
    REQUIRE(sipr::net::ip_key(reinterpret_cast<const sockaddr*>(&ss), k));
    return k;
}

bool in(const AddressSet& s, const char* ip) {
    sockaddr_storage ss = addr(ip);
    return s.contains(reinterpret_cast<const sockaddr*>(&ss));
}

AddressSet set_of(std::initializer_list<const char*> cidrs) {
    AddressSet s;
    for (const char* c : cidrs) {
        CAPTURE(c);
        REQUIRE(s.add(c).empty());
    }
    return s;
}

std::string refusal(const char* cidr) {
    IpRange r;
    std::string why;
    CAPTURE(cidr);
    CHECK_FALSE(sipr::net::parse_cidr(cidr, r, why));
    CHECK(why.find(std::string("'") + cidr + "'") != std::string::npos);  // names the text
    return why;
}

}  // namespace

TEST_SUITE_BEGIN("net");

TEST_CASE("ip_key: IPv4 is ::ffff:a.b.c.d, the port is ignored, other families refused") {
    CHECK(key("192.0.2.1") == key("::ffff:192.0.2.1"));
    CHECK(key("192.0.2.1").hi == 0);
    CHECK(key("192.0.2.1").lo == 0x0000ffffc0000201ull);
    CHECK(key("2001:db8::1").hi == 0x20010db800000000ull);
    CHECK(key("2001:db8::1").lo == 1);
    sockaddr_storage a = addr("192.0.2.1", 1), b = addr("192.0.2.1", 65535);
    IpKey ka, kb;
    REQUIRE(sipr::net::ip_key(reinterpret_cast<const sockaddr*>(&a), ka));
    REQUIRE(sipr::net::ip_key(reinterpret_cast<const sockaddr*>(&b), kb));
    CHECK(ka == kb);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    IpKey k;
    CHECK_FALSE(sipr::net::ip_key(reinterpret_cast<const sockaddr*>(&un), k));
    AddressSet all = set_of({"::/0"});
    CHECK_FALSE(all.contains(reinterpret_cast<const sockaddr*>(&un)));
}

TEST_CASE("source_key: IPv6 cut to the prefix, IPv4 and v4-mapped whole") {
    using sipr::net::is_v4_mapped;
    using sipr::net::prefix_mask;
    using sipr::net::source_key;
    CHECK(prefix_mask(64) == IpKey{~0ull, 0});
    CHECK(prefix_mask(128) == IpKey{~0ull, ~0ull});
    CHECK(prefix_mask(1) == IpKey{0x8000000000000000ull, 0});
    CHECK(prefix_mask(96) == IpKey{~0ull, 0xffffffff00000000ull});
    CHECK(prefix_mask(0) == IpKey{0, 0});
    CHECK(prefix_mask(500) == IpKey{~0ull, ~0ull});
    const IpKey v6{0x20010db812345678ull, 0x9abcdef012345678ull};
    CHECK(source_key(v6, prefix_mask(64)) == IpKey{0x20010db812345678ull, 0});
    CHECK(source_key(v6, prefix_mask(56)) == IpKey{0x20010db812345600ull, 0});
    CHECK(source_key(v6, prefix_mask(128)) == v6);
    // An IPv4 source (AF_INET, or AF_INET6 ::ffff:a.b.c.d: the same key) is never cut.
    const IpKey mapped{0, 0x0000ffffc0000207ull};
    CHECK(is_v4_mapped(mapped));
    CHECK(source_key(mapped, prefix_mask(64)) == mapped);
    CHECK(source_key(mapped, prefix_mask(1)) == mapped);
    CHECK_FALSE(is_v4_mapped(IpKey{0, 1}));                      // ::1
    CHECK_FALSE(is_v4_mapped(IpKey{0, 0x00000000c0000207ull}));  // ::192.0.2.7 (deprecated form)
    CHECK_FALSE(is_v4_mapped(IpKey{1, 0x0000ffffc0000207ull}));
    CHECK(source_key(IpKey{0, 0x00000000c0000207ull}, prefix_mask(64)) == IpKey{0, 0});
    sockaddr_in6 sa6{};
    sa6.sin6_family = AF_INET6;
    REQUIRE(inet_pton(AF_INET6, "::ffff:192.0.2.7", &sa6.sin6_addr) == 1);
    IpKey k;
    REQUIRE(sipr::net::ip_key(reinterpret_cast<const sockaddr*>(&sa6), k));
    CHECK(source_key(k, prefix_mask(64)) == mapped);
}

TEST_CASE("AddressSet: an IPv4 /24 holds its first and last address and nothing around") {
    AddressSet s = set_of({"192.0.2.0/24"});
    CHECK(in(s, "192.0.2.0"));
    CHECK(in(s, "192.0.2.1"));
    CHECK(in(s, "192.0.2.255"));
    CHECK_FALSE(in(s, "192.0.1.255"));
    CHECK_FALSE(in(s, "192.0.3.0"));
    CHECK_FALSE(in(s, "2001:db8::1"));
    CHECK_FALSE(in(s, "::192.0.2.1"));  // IPv4-compatible (deprecated), not v4-mapped
}

TEST_CASE("AddressSet: a v4-mapped IPv6 source matches an IPv4 rule, and the other way round") {
    AddressSet v4 = set_of({"10.0.0.0/8"});
    CHECK(in(v4, "::ffff:10.1.2.3"));
    CHECK(in(v4, "::ffff:10.255.255.255"));
    CHECK_FALSE(in(v4, "::ffff:11.0.0.0"));
    AddressSet mapped = set_of({"::ffff:192.0.2.0/120"});
    CHECK(in(mapped, "192.0.2.77"));
    CHECK_FALSE(in(mapped, "192.0.3.1"));
}

TEST_CASE("AddressSet: /0 of IPv4 holds every IPv4 source only; ::/0 holds everything") {
    AddressSet v4 = set_of({"0.0.0.0/0"});
    CHECK(in(v4, "0.0.0.0"));
    CHECK(in(v4, "255.255.255.255"));
    CHECK(in(v4, "::ffff:1.2.3.4"));
    CHECK_FALSE(in(v4, "::1"));
    CHECK_FALSE(in(v4, "2001:db8::1"));
    AddressSet all = set_of({"::/0"});
    CHECK(in(all, "::"));
    CHECK(in(all, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK(in(all, "127.0.0.1"));
    CHECK(in(all, "2001:db8::1"));
    REQUIRE(all.ranges().size() == 1);
}

TEST_CASE("AddressSet: /32, /128 and a bare address are one host") {
    for (const char* rule : {"192.0.2.7/32", "192.0.2.7", " 192.0.2.7\t"}) {
        CAPTURE(rule);
        AddressSet s = set_of({rule});
        CHECK(in(s, "192.0.2.7"));
        CHECK_FALSE(in(s, "192.0.2.6"));
        CHECK_FALSE(in(s, "192.0.2.8"));
    }
    for (const char* rule : {"2001:db8::7/128", "2001:db8::7"}) {
        CAPTURE(rule);
        AddressSet s = set_of({rule});
        CHECK(in(s, "2001:db8::7"));
        CHECK_FALSE(in(s, "2001:db8::6"));
        CHECK_FALSE(in(s, "2001:db8::8"));
    }
    AddressSet last = set_of({"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"});
    CHECK(in(last, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK_FALSE(in(last, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"));
}

TEST_CASE("AddressSet: IPv6 prefixes across the 64-bit halves") {
    AddressSet s = set_of({"2001:db8::/32", "2001:db8:1:2:3:4::/96", "2001:db9:0:0:8000::/65"});
    CHECK(in(s, "2001:db8::"));
    CHECK(in(s, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK_FALSE(in(s, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK(in(s, "2001:db9::8000:0:0:0"));
    CHECK(in(s, "2001:db9::ffff:ffff:ffff:ffff"));
    CHECK_FALSE(in(s, "2001:db9::7fff:ffff:ffff:ffff"));
    CHECK_FALSE(in(s, "2001:db9:0:1::"));
}

TEST_CASE("AddressSet: overlapping and adjacent CIDRs merge; disjoint ones stay apart") {
    AddressSet s = set_of({"10.128.0.0/9", "10.0.0.0/9", "10.1.0.0/16", "192.0.2.0/24",
                           "192.0.2.128/25", "198.51.100.0/24", "2001:db8::/32"});
    // 10.0.0.0/9 + 10.128.0.0/9 = 10.0.0.0/8; 192.0.2.128/25 lies inside 192.0.2.0/24;
    // 192.0.2.0/24 and 198.51.100.0/24 are not adjacent.
    REQUIRE(s.ranges().size() == 4);
    CHECK(s.ranges()[0].first == key("10.0.0.0"));
    CHECK(s.ranges()[0].last == key("10.255.255.255"));
    CHECK(in(s, "10.127.255.255"));
    CHECK(in(s, "10.128.0.0"));
    CHECK_FALSE(in(s, "192.0.3.0"));
    CHECK_FALSE(in(s, "198.51.99.255"));
    AddressSet adj = set_of({"192.0.2.0/25", "192.0.2.128/25"});
    CHECK(adj.ranges().size() == 1);
    AddressSet top = set_of({"ffff::/16", "::/0"});
    CHECK(top.ranges().size() == 1);
}

TEST_CASE("AddressSet: an empty set holds nothing") {
    AddressSet s;
    CHECK(s.empty());
    CHECK_FALSE(in(s, "127.0.0.1"));
    CHECK_FALSE(in(s, "::1"));
}

TEST_CASE("parse_cidr: bad text is refused with a sentence naming it") {
    CHECK(refusal("").find("not an IPv4 or IPv6 address") != std::string::npos);
    for (const char* bad : {"300.1.1.1", "10.0.0", "1.2.3.4.5", "example.com", "[::1]", "[::1]/128",
                            "fe80::1%eth0", "::1::2", "10.0.0.0 /8", "01.2.3.4/32", "/8", "-"}) {
        std::string why = refusal(bad);
        CHECK(why.find("not an IPv4 or IPv6 address") != std::string::npos);
    }
    for (const char* bad :
         {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/8/8", "10.0.0.0/-1", "10.0.0.0/+8",
          "10.0.0.0/8 x", "10.0.0.0/0x8", "::/1000", "10.0.0.0/0008"}) {
        std::string why = refusal(bad);
        CHECK(why.find("bad prefix length") != std::string::npos);
    }
    CHECK(refusal("10.0.0.0/33").find("0..32") != std::string::npos);
    CHECK(refusal("::/129").find("0..128") != std::string::npos);
}

TEST_CASE("parse_cidr: bits after the prefix are refused, with the network suggested") {
    std::string why = refusal("10.1.0.0/8");
    CHECK(why.find("write 10.0.0.0/8") != std::string::npos);
    why = refusal("192.0.2.1/24");
    CHECK(why.find("write 192.0.2.0/24") != std::string::npos);
    why = refusal("2001:db8::1/64");
    CHECK(why.find("write 2001:db8::/64") != std::string::npos);
    why = refusal("0.0.0.1/0");
    CHECK(why.find("write 0.0.0.0/0") != std::string::npos);
    // The add() of a set says the same and adds nothing.
    AddressSet s;
    CHECK_FALSE(s.add("10.1.0.0/8").empty());
    CHECK(s.empty());
}

TEST_CASE("AddressSet: agrees with a naive matcher on random rules and addresses") {
    std::mt19937_64 rng(20240611);
    auto random_key = [&](bool v4) {
        IpKey k;
        if (v4) {
            k.lo = 0x0000ffff00000000ull | (rng() & 0xffffffffull);
        } else {
            k.hi = rng();
            k.lo = rng();
            if (rng() % 4 == 0) k.hi = 0x20010db800000000ull | (k.hi & 0xffff);  // cluster
        }
        return k;
    };
    for (int round = 0; round < 50; ++round) {
        AddressSet s;
        std::vector<std::pair<IpKey, unsigned>> rules;  // network, prefix in the IPv6 space
        int n = 1 + static_cast<int>(rng() % 12);
        for (int i = 0; i < n; ++i) {
            bool v4 = rng() % 2 == 0;
            unsigned prefix = static_cast<unsigned>(rng() % (v4 ? 33 : 129));
            unsigned bits = v4 ? 96 + prefix : prefix;
            IpKey k = random_key(v4);
            // Clear the host bits.
            if (bits < 64) {
                k.hi = bits == 0 ? 0 : k.hi & ~(~0ull >> bits);
                k.lo = 0;
            } else if (bits < 128) {
                k.lo &= ~(~0ull >> (bits - 64));
            }
            char text[INET6_ADDRSTRLEN];
            if (v4) {
                in_addr a{htonl(static_cast<uint32_t>(k.lo))};
                inet_ntop(AF_INET, &a, text, sizeof text);
            } else {
                in6_addr a{};
                for (int b = 0; b < 8; ++b) {
                    a.s6_addr[b] = static_cast<uint8_t>(k.hi >> (56 - 8 * b));
                    a.s6_addr[8 + b] = static_cast<uint8_t>(k.lo >> (56 - 8 * b));
                }
                inet_ntop(AF_INET6, &a, text, sizeof text);
            }
            std::string cidr = std::string(text) + "/" + std::to_string(prefix);
            CAPTURE(cidr);
            REQUIRE(s.add(cidr).empty());
            rules.emplace_back(k, bits);
        }
        auto naive = [&](const IpKey& a) {
            for (const auto& [net, bits] : rules) {
                uint64_t mhi = bits >= 64 ? ~0ull : bits == 0 ? 0 : ~(~0ull >> bits);
                uint64_t mlo = bits <= 64 ? 0 : bits == 128 ? ~0ull : ~(~0ull >> (bits - 64));
                if ((a.hi & mhi) == net.hi && (a.lo & mlo) == net.lo) return true;
            }
            return false;
        };
        for (int i = 0; i < 2000; ++i) {
            IpKey a = random_key(rng() % 2 == 0);
            if (i % 3 == 0) {  // near a rule's network, so that hits are frequent
                const auto& [net, bits] = rules[rng() % rules.size()];
                a = net;
                a.lo ^= rng() & 0xff;
            }
            CHECK(s.contains(a) == naive(a));
        }
    }
}

TEST_SUITE_END();
