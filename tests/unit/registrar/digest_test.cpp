// Digest primitives (include/sipr/registrar/digest.h): the worked examples of RFC 2617 §3.5 and
// RFC 7616 §3.9.1, HMAC-SHA256 against RFC 4231, the constant-time comparison, and the stateless
// nonces (expiry, another secret, another realm, tampering). Every expected value below is copied
// from the RFC (or was computed with Python's hashlib/hmac), never produced by the code under test.
#include "sipr/registrar/digest.h"

#include <doctest/doctest.h>

#include <array>
#include <cctype>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace {

using namespace sipr::registrar;

std::string hex_of(DigestHasher& h, DigestAlgorithm a, std::initializer_list<std::string_view> p) {
    char out[kMaxDigestHex];
    std::size_t n = h.hex(a, std::span(p.begin(), p.size()), out);
    return std::string(out, n);
}

std::string response_of(DigestHasher& h, DigestAlgorithm a, const DigestInput& in) {
    char out[kMaxDigestHex];
    std::size_t n = digest_response(h, a, in, out);
    return std::string(out, n);
}

std::string hex_bytes(const std::array<unsigned char, 32>& b) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) {
        s += kHex[c >> 4];
        s += kHex[c & 0xf];
    }
    return s;
}

constexpr std::array<unsigned char, 8> kRandom{1, 2, 3, 4, 5, 6, 7, 8};
constexpr uint32_t kT = 1'700'000'000;

std::string nonce_at(DigestHasher& h, const HmacSha256& key, uint32_t t, std::string_view realm,
                     std::array<unsigned char, 8> random = kRandom) {
    char n[kNonceLength];
    REQUIRE(make_nonce(h, key, t, random, realm, n));
    return std::string(n, sizeof n);
}

}  // namespace

TEST_SUITE_BEGIN("registrar");

TEST_CASE("digest: RFC 2617 §3.5 worked example (MD5, qop=auth)") {
    DigestHasher h;
    REQUIRE(h.ok());
    // HA1 = MD5("Mufasa:testrealm@host.com:Circle Of Life")
    std::string ha1 =
        hex_of(h, DigestAlgorithm::Md5, {"Mufasa", "testrealm@host.com", "Circle Of Life"});
    CHECK(ha1 == "939e7578ed9e3c518a452acee763bce9");
    DigestInput in{ha1,
                   "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                   "00000001",
                   "0a4f113b",
                   "auth",
                   "GET",
                   "/dir/index.html"};
    CHECK(response_of(h, DigestAlgorithm::Md5, in) == "6629fae49393a05397450978507c4ef1");
}

TEST_CASE("digest: RFC 7616 §3.9.1 worked example (SHA-256 and MD5, RFC 8760's algorithms)") {
    DigestHasher h;
    const DigestInput base{{},
                           "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                           "00000001",
                           "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                           "auth",
                           "GET",
                           "/dir/index.html"};
    SUBCASE("SHA-256") {
        std::string ha1 = hex_of(h, DigestAlgorithm::Sha256,
                                 {"Mufasa", "http-auth@example.org", "Circle of Life"});
        CHECK(ha1.size() == 64);
        DigestInput in = base;
        in.ha1 = ha1;
        CHECK(response_of(h, DigestAlgorithm::Sha256, in) ==
              "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
    }
    SUBCASE("MD5") {
        std::string ha1 =
            hex_of(h, DigestAlgorithm::Md5, {"Mufasa", "http-auth@example.org", "Circle of Life"});
        DigestInput in = base;
        in.ha1 = ha1;
        CHECK(response_of(h, DigestAlgorithm::Md5, in) == "8ca523f5e9506fed4657c9700eebdbec");
    }
}

TEST_CASE("digest: algorithm names, nonce-counts") {
    DigestAlgorithm a{};
    CHECK((parse_algorithm("", a) && a == DigestAlgorithm::Md5));  // RFC 2617: absent is MD5
    CHECK((parse_algorithm("md5", a) && a == DigestAlgorithm::Md5));
    CHECK((parse_algorithm("SHA-256", a) && a == DigestAlgorithm::Sha256));
    CHECK((parse_algorithm("sha-256", a) && a == DigestAlgorithm::Sha256));
    CHECK_FALSE(parse_algorithm("MD5-sess", a));
    CHECK_FALSE(parse_algorithm("SHA-512-256", a));
    CHECK_FALSE(parse_algorithm("SHA256", a));
    CHECK(algorithm_name(DigestAlgorithm::Sha256) == "SHA-256");
    CHECK(algorithm_name(DigestAlgorithm::Md5) == "MD5");

    uint32_t nc = 0;
    CHECK((parse_nonce_count("00000001", nc) && nc == 1));
    CHECK((parse_nonce_count("0000000A", nc) && nc == 10));
    CHECK((parse_nonce_count("ffffffff", nc) && nc == 0xffffffffU));
    CHECK_FALSE(parse_nonce_count("1", nc));
    CHECK_FALSE(parse_nonce_count("000000001", nc));
    CHECK_FALSE(parse_nonce_count("0000000g", nc));
    CHECK_FALSE(parse_nonce_count("", nc));
}

TEST_CASE("digest: responses are compared whole, in constant time, hex in either case") {
    const std::string want = "6629fae49393a05397450978507c4ef1";
    CHECK(digests_equal(want, want));
    CHECK(digests_equal(want, "6629FAE49393A05397450978507C4EF1"));
    std::string first = want, last = want;
    first[0] = '7';
    last[31] = '0';
    CHECK_FALSE(digests_equal(want, first));
    CHECK_FALSE(digests_equal(want, last));
    CHECK_FALSE(digests_equal(want, want.substr(0, 31)));
    CHECK_FALSE(digests_equal(want, want + "0"));
    CHECK_FALSE(digests_equal(want, ""));
    CHECK_FALSE(digests_equal(want, std::string(200, 'a')));
}

TEST_CASE("digest: HMAC-SHA256 (RFC 4231 test cases 2 and 6)") {
    DigestHasher h;
    std::array<unsigned char, 32> mac{};
    HmacSha256 jefe("Jefe");
    const std::string_view msg[] = {"what do ya ", "want for nothing?"};  // split: one message
    REQUIRE(jefe.mac(h, msg, mac));
    CHECK(hex_bytes(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    const std::string long_key(131, '\xaa');  // longer than the block: hashed first
    HmacSha256 big(long_key);
    const std::string_view msg6[] = {"Test Using Larger Than Block-Size Key - Hash Key First"};
    REQUIRE(big.mac(h, msg6, mac));
    CHECK(hex_bytes(mac) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST_CASE("digest: a nonce is fresh for its lifetime, then stale") {
    DigestHasher h;
    HmacSha256 key("shared secret");
    std::string n = nonce_at(h, key, kT, "example.com");
    CHECK(n.size() == kNonceLength);
    CHECK(n.substr(0, 8) == "6553f100");  // 1700000000 in hex: the issue time is readable
    uint32_t issued = 0;
    CHECK(check_nonce(h, key, n, "example.com", kT, 300, 30, issued) == NonceStatus::Fresh);
    CHECK(issued == kT);
    CHECK(check_nonce(h, key, n, "example.com", kT + 300, 300, 30, issued) == NonceStatus::Fresh);
    CHECK(check_nonce(h, key, n, "example.com", kT + 301, 300, 30, issued) == NonceStatus::Stale);
    CHECK(check_nonce(h, key, n, "example.com", kT + 86400, 300, 30, issued) == NonceStatus::Stale);
    // Issued by an instance whose clock is a little ahead: accepted; far ahead: not ours.
    CHECK(check_nonce(h, key, n, "example.com", kT - 30, 300, 30, issued) == NonceStatus::Fresh);
    CHECK(check_nonce(h, key, n, "example.com", kT - 31, 300, 30, issued) == NonceStatus::Invalid);
}

TEST_CASE("digest: a nonce of another secret, another realm, or altered is not ours") {
    DigestHasher h;
    HmacSha256 key("shared secret");
    HmacSha256 other("another secret");
    std::string n = nonce_at(h, key, kT, "example.com");
    uint32_t issued = 0;
    CHECK(check_nonce(h, other, n, "example.com", kT, 300, 30, issued) == NonceStatus::Invalid);
    CHECK(check_nonce(h, key, n, "example.org", kT, 300, 30, issued) == NonceStatus::Invalid);
    // Any key that shares the secret verifies it (another registrar instance).
    HmacSha256 same("shared secret");
    CHECK(check_nonce(h, same, n, "example.com", kT, 300, 30, issued) == NonceStatus::Fresh);

    // Refreshing an expired nonce by rewriting its time breaks the MAC.
    std::string old = nonce_at(h, key, kT - 1000, "example.com");
    CHECK(check_nonce(h, key, old, "example.com", kT, 300, 30, issued) == NonceStatus::Stale);
    std::string forged = old;
    forged.replace(0, 8, n.substr(0, 8));
    CHECK(check_nonce(h, key, forged, "example.com", kT, 300, 30, issued) == NonceStatus::Invalid);
    for (std::size_t i : {std::size_t{0}, std::size_t{10}, kNonceLength - 1}) {
        std::string t = n;
        t[i] = t[i] == '0' ? '1' : '0';
        CHECK(check_nonce(h, key, t, "example.com", kT, 300, 30, issued) == NonceStatus::Invalid);
    }
    std::string upper = n;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (upper != n)
        CHECK(check_nonce(h, key, upper, "example.com", kT, 300, 30, issued) ==
              NonceStatus::Invalid);
    CHECK(check_nonce(h, key, n.substr(1), "example.com", kT, 300, 30, issued) ==
          NonceStatus::Invalid);
    CHECK(check_nonce(h, key, n + "0", "example.com", kT, 300, 30, issued) == NonceStatus::Invalid);
    CHECK(check_nonce(h, key, "", "example.com", kT, 300, 30, issued) == NonceStatus::Invalid);
    CHECK(check_nonce(h, key, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "example.com", kT, 300, 30,
                      issued) == NonceStatus::Invalid);
}

TEST_CASE("digest: two nonces of one second differ by their random part") {
    DigestHasher h;
    HmacSha256 key("shared secret");
    std::string a = nonce_at(h, key, kT, "example.com", {1, 2, 3, 4, 5, 6, 7, 8});
    std::string b = nonce_at(h, key, kT, "example.com", {1, 2, 3, 4, 5, 6, 7, 9});
    CHECK(a != b);
    CHECK(a.substr(0, 8) == b.substr(0, 8));
    uint32_t issued = 0;
    CHECK(check_nonce(h, key, b, "example.com", kT, 300, 30, issued) == NonceStatus::Fresh);
}

TEST_SUITE_END();
