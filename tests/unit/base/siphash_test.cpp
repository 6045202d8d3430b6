// SipHash-2-4 against the published reference vectors (Aumasson & Bernstein, "SipHash: a fast
// short-input PRF", 2012, appendix A; and vectors.h of the reference implementation
// github.com/veorq/SipHash): key 00 01 .. 0f, message 00 01 .. (n-1) for n = 0..63, each output
// given as its 8 bytes in little-endian order. Expectations are hard-coded, never computed with the
// code under test.
#include "sipr/base/siphash.h"

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

using sipr::base::derive_sip_key;
using sipr::base::siphash24;
using sipr::base::SipHasher;
using sipr::base::SipKey;

// Key bytes 00..0f read as two little-endian 64-bit words.
constexpr SipKey kRefKey{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

// vectors_sip64 of the reference implementation, as published.
constexpr unsigned char kVectors[64][8] = {
    {0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72},  // 0
    {0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74},  // 1
    {0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d},  // 2
    {0x2d, 0x7e, 0xfb, 0xd7, 0x96, 0x66, 0x67, 0x85},  // 3
    {0xb7, 0x87, 0x71, 0x27, 0xe0, 0x94, 0x27, 0xcf},  // 4
    {0x8d, 0xa6, 0x99, 0xcd, 0x64, 0x55, 0x76, 0x18},  // 5
    {0xce, 0xe3, 0xfe, 0x58, 0x6e, 0x46, 0xc9, 0xcb},  // 6
    {0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab},  // 7
    {0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93},  // 8
    {0xb0, 0xe4, 0xa9, 0x0b, 0xdf, 0x82, 0x00, 0x9e},  // 9
    {0xf3, 0xb9, 0xdd, 0x94, 0xc5, 0xbb, 0x5d, 0x7a},  // 10
    {0xa7, 0xad, 0x6b, 0x22, 0x46, 0x2f, 0xb3, 0xf4},  // 11
    {0xfb, 0xe5, 0x0e, 0x86, 0xbc, 0x8f, 0x1e, 0x75},  // 12
    {0x90, 0x3d, 0x84, 0xc0, 0x27, 0x56, 0xea, 0x14},  // 13
    {0xee, 0xf2, 0x7a, 0x8e, 0x90, 0xca, 0x23, 0xf7},  // 14
    {0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1},  // 15
    {0xdb, 0x9b, 0xc2, 0x57, 0x7f, 0xcc, 0x2a, 0x3f},  // 16
    {0x94, 0x47, 0xbe, 0x2c, 0xf5, 0xe9, 0x9a, 0x69},  // 17
    {0x9c, 0xd3, 0x8d, 0x96, 0xf0, 0xb3, 0xc1, 0x4b},  // 18
    {0xbd, 0x61, 0x79, 0xa7, 0x1d, 0xc9, 0x6d, 0xbb},  // 19
    {0x98, 0xee, 0xa2, 0x1a, 0xf2, 0x5c, 0xd6, 0xbe},  // 20
    {0xc7, 0x67, 0x3b, 0x2e, 0xb0, 0xcb, 0xf2, 0xd0},  // 21
    {0x88, 0x3e, 0xa3, 0xe3, 0x95, 0x67, 0x53, 0x93},  // 22
    {0xc8, 0xce, 0x5c, 0xcd, 0x8c, 0x03, 0x0c, 0xa8},  // 23
    {0x94, 0xaf, 0x49, 0xf6, 0xc6, 0x50, 0xad, 0xb8},  // 24
    {0xea, 0xb8, 0x85, 0x8a, 0xde, 0x92, 0xe1, 0xbc},  // 25
    {0xf3, 0x15, 0xbb, 0x5b, 0xb8, 0x35, 0xd8, 0x17},  // 26
    {0xad, 0xcf, 0x6b, 0x07, 0x63, 0x61, 0x2e, 0x2f},  // 27
    {0xa5, 0xc9, 0x1d, 0xa7, 0xac, 0xaa, 0x4d, 0xde},  // 28
    {0x71, 0x65, 0x95, 0x87, 0x66, 0x50, 0xa2, 0xa6},  // 29
    {0x28, 0xef, 0x49, 0x5c, 0x53, 0xa3, 0x87, 0xad},  // 30
    {0x42, 0xc3, 0x41, 0xd8, 0xfa, 0x92, 0xd8, 0x32},  // 31
    {0xce, 0x7c, 0xf2, 0x72, 0x2f, 0x51, 0x27, 0x71},  // 32
    {0xe3, 0x78, 0x59, 0xf9, 0x46, 0x23, 0xf3, 0xa7},  // 33
    {0x38, 0x12, 0x05, 0xbb, 0x1a, 0xb0, 0xe0, 0x12},  // 34
    {0xae, 0x97, 0xa1, 0x0f, 0xd4, 0x34, 0xe0, 0x15},  // 35
    {0xb4, 0xa3, 0x15, 0x08, 0xbe, 0xff, 0x4d, 0x31},  // 36
    {0x81, 0x39, 0x62, 0x29, 0xf0, 0x90, 0x79, 0x02},  // 37
    {0x4d, 0x0c, 0xf4, 0x9e, 0xe5, 0xd4, 0xdc, 0xca},  // 38
    {0x5c, 0x73, 0x33, 0x6a, 0x76, 0xd8, 0xbf, 0x9a},  // 39
    {0xd0, 0xa7, 0x04, 0x53, 0x6b, 0xa9, 0x3e, 0x0e},  // 40
    {0x92, 0x59, 0x58, 0xfc, 0xd6, 0x42, 0x0c, 0xad},  // 41
    {0xa9, 0x15, 0xc2, 0x9b, 0xc8, 0x06, 0x73, 0x18},  // 42
    {0x95, 0x2b, 0x79, 0xf3, 0xbc, 0x0a, 0xa6, 0xd4},  // 43
    {0xf2, 0x1d, 0xf2, 0xe4, 0x1d, 0x45, 0x35, 0xf9},  // 44
    {0x87, 0x57, 0x75, 0x19, 0x04, 0x8f, 0x53, 0xa9},  // 45
    {0x10, 0xa5, 0x6c, 0xf5, 0xdf, 0xcd, 0x9a, 0xdb},  // 46
    {0xeb, 0x75, 0x09, 0x5c, 0xcd, 0x98, 0x6c, 0xd0},  // 47
    {0x51, 0xa9, 0xcb, 0x9e, 0xcb, 0xa3, 0x12, 0xe6},  // 48
    {0x96, 0xaf, 0xad, 0xfc, 0x2c, 0xe6, 0x66, 0xc7},  // 49
    {0x72, 0xfe, 0x52, 0x97, 0x5a, 0x43, 0x64, 0xee},  // 50
    {0x5a, 0x16, 0x45, 0xb2, 0x76, 0xd5, 0x92, 0xa1},  // 51
    {0xb2, 0x74, 0xcb, 0x8e, 0xbf, 0x87, 0x87, 0x0a},  // 52
    {0x6f, 0x9b, 0xb4, 0x20, 0x3d, 0xe7, 0xb3, 0x81},  // 53
    {0xea, 0xec, 0xb2, 0xa3, 0x0b, 0x22, 0xa8, 0x7f},  // 54
    {0x99, 0x24, 0xa4, 0x3c, 0xc1, 0x31, 0x57, 0x24},  // 55
    {0xbd, 0x83, 0x8d, 0x3a, 0xaf, 0xbf, 0x8d, 0xb7},  // 56
    {0x0b, 0x1a, 0x2a, 0x32, 0x65, 0xd5, 0x1a, 0xea},  // 57
    {0x13, 0x50, 0x79, 0xa3, 0x23, 0x1c, 0xe6, 0x60},  // 58
    {0x93, 0x2b, 0x28, 0x46, 0xe4, 0xd7, 0x06, 0x66},  // 59
    {0xe1, 0x91, 0x5f, 0x5c, 0xb1, 0xec, 0xa4, 0x6c},  // 60
    {0xf3, 0x25, 0x96, 0x5c, 0xa1, 0x6d, 0x62, 0x9f},  // 61
    {0x57, 0x5f, 0xf2, 0x8e, 0x60, 0x38, 0x1b, 0xe5},  // 62
    {0x72, 0x45, 0x06, 0xeb, 0x4c, 0x32, 0x8a, 0x95},  // 63
};

uint64_t load_le64(const unsigned char* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// The message 00 01 02 .. (n-1).
std::string ref_message(std::size_t n) {
    std::string m(n, '\0');
    for (std::size_t i = 0; i < n; ++i) m[i] = static_cast<char>(i);
    return m;
}

}  // namespace

TEST_CASE("siphash24: the paper's appendix vector (15 bytes)") {
    // Appendix A of the paper: message 00..0e under key 00..0f gives a129ca6149be45e5.
    CHECK(siphash24(kRefKey, ref_message(15)) == 0xa129ca6149be45e5ULL);
}

TEST_CASE("siphash24: empty message") {
    CHECK(siphash24(kRefKey, std::string_view{}) == 0x726fdb47dd0e0e31ULL);
    CHECK(siphash24(kRefKey, "") == 0x726fdb47dd0e0e31ULL);
}

TEST_CASE("siphash24: first reference vectors as 64-bit values") {
    constexpr std::array<uint64_t, 10> kFirst{
        0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL, 0x85676696d7fb7e2dULL,
        0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL, 0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL,
        0x93f5f5799a932462ULL, 0x9e0082df0ba9e4b0ULL,
    };
    for (std::size_t n = 0; n < kFirst.size(); ++n) {
        CAPTURE(n);
        CHECK(load_le64(kVectors[n]) == kFirst[n]);  // the two tables agree
        CHECK(siphash24(kRefKey, ref_message(n)) == kFirst[n]);
    }
}

TEST_CASE("siphash24: all 64 reference vectors, one shot") {
    for (std::size_t n = 0; n < 64; ++n) {
        CAPTURE(n);
        CHECK(siphash24(kRefKey, ref_message(n)) == load_le64(kVectors[n]));
    }
}

TEST_CASE("SipHasher: byte-at-a-time equals the reference") {
    for (std::size_t n = 0; n < 64; ++n) {
        const std::string m = ref_message(n);
        SipHasher h(kRefKey);
        for (char c : m) h.update(std::string_view(&c, 1));
        CAPTURE(n);
        CHECK(h.finish() == load_le64(kVectors[n]));
    }
}

TEST_CASE("SipHasher: every two-way split equals the reference") {
    bool all_equal = true;
    std::size_t first_bad_n = 0, first_bad_split = 0;
    for (std::size_t n = 0; n < 64; ++n) {
        const std::string m = ref_message(n);
        for (std::size_t split = 0; split <= n; ++split) {
            SipHasher h(kRefKey);
            h.update(std::string_view(m).substr(0, split));
            h.update(std::string_view(m).substr(split));
            if (h.finish() != load_le64(kVectors[n]) && all_equal) {
                all_equal = false;
                first_bad_n = n;
                first_bad_split = split;
            }
        }
    }
    CAPTURE(first_bad_n);
    CAPTURE(first_bad_split);
    CHECK(all_equal);
}

TEST_CASE("SipHasher: three-way splits, empty updates and odd chunk sizes") {
    const std::string m = ref_message(63);
    bool all_equal = true;
    for (std::size_t a = 0; a <= 63; a += 3) {
        for (std::size_t b = a; b <= 63; b += 5) {
            SipHasher h(kRefKey);
            h.update({});
            h.update(std::string_view(m).substr(0, a));
            h.update({});
            h.update(std::string_view(m).substr(a, b - a));
            h.update(std::string_view(m).substr(b));
            if (h.finish() != load_le64(kVectors[63])) all_equal = false;
        }
    }
    CHECK(all_equal);

    // Chunks of 7 and 9 bytes straddle the 8-byte word boundary differently each time.
    for (std::size_t chunk : {std::size_t{7}, std::size_t{9}, std::size_t{13}}) {
        SipHasher h(kRefKey);
        for (std::size_t i = 0; i < m.size(); i += chunk)
            h.update(std::string_view(m).substr(i, chunk));
        CAPTURE(chunk);
        CHECK(h.finish() == load_le64(kVectors[63]));
    }
}

TEST_CASE("SipHasher: finish() does not disturb the state") {
    const std::string m = ref_message(20);
    SipHasher h(kRefKey);
    h.update(std::string_view(m).substr(0, 11));
    CHECK(h.finish() == load_le64(kVectors[11]));
    CHECK(h.finish() == load_le64(kVectors[11]));  // twice: same answer
    h.update(std::string_view(m).substr(11));
    CHECK(h.finish() == load_le64(kVectors[20]));  // hashing goes on after an intermediate finish
}

TEST_CASE("siphash24: the key matters") {
    const std::string m = ref_message(15);
    CHECK(siphash24(SipKey{0, 0}, m) != siphash24(kRefKey, m));
    CHECK(siphash24(SipKey{kRefKey.k1, kRefKey.k0}, m) != siphash24(kRefKey, m));
    CHECK(siphash24(SipKey{kRefKey.k0 ^ 1, kRefKey.k1}, m) != siphash24(kRefKey, m));
    CHECK(siphash24(SipKey{kRefKey.k0, kRefKey.k1 ^ (1ULL << 63)}, m) != siphash24(kRefKey, m));
}

TEST_CASE("siphash24: length is part of the input (trailing zero bytes change the hash)") {
    const std::string one(1, '\0');
    const std::string two(2, '\0');
    const std::string eight(8, '\0');
    CHECK(siphash24(kRefKey, "") != siphash24(kRefKey, one));
    CHECK(siphash24(kRefKey, one) != siphash24(kRefKey, two));
    CHECK(siphash24(kRefKey, eight) != siphash24(kRefKey, std::string(9, '\0')));
}

TEST_CASE("derive_sip_key: deterministic, secret-dependent") {
    const SipKey a1 = derive_sip_key("correct horse battery staple");
    const SipKey a2 = derive_sip_key(std::string("correct horse battery staple"));
    CHECK(a1.k0 == a2.k0);
    CHECK(a1.k1 == a2.k1);

    const SipKey b = derive_sip_key("correct horse battery staplf");
    CHECK(b.k0 != a1.k0);
    CHECK(b.k1 != a1.k1);

    const SipKey c = derive_sip_key("");
    const SipKey d = derive_sip_key(std::string_view("\0", 1));
    CHECK((c.k0 != d.k0 || c.k1 != d.k1));
    CHECK(c.k0 == derive_sip_key("").k0);
    CHECK(c.k1 == derive_sip_key("").k1);

    // The two halves come from different fixed keys, so they differ from each other.
    CHECK(a1.k0 != a1.k1);
    CHECK(c.k0 != c.k1);
    // A derived key is not the zero key.
    CHECK((a1.k0 != 0 || a1.k1 != 0));

    // Keys derived from different secrets hash the same message differently.
    CHECK(siphash24(a1, "call-id") != siphash24(b, "call-id"));
    CHECK(siphash24(a1, "call-id") == siphash24(a2, "call-id"));
}
