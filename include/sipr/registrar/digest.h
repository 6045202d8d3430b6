#pragma once
// Digest authentication primitives (RFC 7616 as SIP uses it: RFC 3261 §22, RFC 8760): the
// algorithms, the response of qop=auth, HMAC-SHA256, stateless nonces and the constant-time
// comparison. Pure computation on OpenSSL libcrypto; nothing here allocates after construction.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

struct evp_md_st;
struct evp_md_ctx_st;

namespace sipr::registrar {

enum class DigestAlgorithm : uint8_t { Md5, Sha256 };

// "MD5" / "SHA-256", as written in the algorithm parameter.
[[nodiscard]] std::string_view algorithm_name(DigestAlgorithm a) noexcept;
// Parses an algorithm parameter (case-insensitive). An empty one means MD5 (RFC 2617 §3.2.1).
// Returns false for anything else (MD5-sess, SHA-512-256, ...), which this registrar never offers.
[[nodiscard]] bool parse_algorithm(std::string_view text, DigestAlgorithm& out) noexcept;
// An ordered set of algorithms, most preferred first: what one subscriber is challenged with.
struct AlgorithmList {
    std::array<DigestAlgorithm, 2> items{};
    uint8_t size = 0;
    [[nodiscard]] bool contains(DigestAlgorithm a) const noexcept {
        for (uint8_t i = 0; i < size; ++i)
            if (items[i] == a) return true;
        return false;
    }
    // Appends `a` unless it is already there.
    void add(DigestAlgorithm a) noexcept {
        if (!contains(a) && size < items.size()) items[size++] = a;
    }
    [[nodiscard]] std::span<const DigestAlgorithm> view() const noexcept {
        return {items.data(), size};
    }
};
// Parses a subscriber's list ("SHA-256,MD5": names separated by commas, blanks around them
// ignored, case-insensitive) into `out`, in order, each once. Names this registrar does not know
// and empty items are skipped; `out` is empty when none is known.
void parse_algorithm_list(std::string_view text, AlgorithmList& out) noexcept;

// Length of the algorithm's digest in hex: 32 for MD5, 64 for SHA-256.
[[nodiscard]] constexpr std::size_t hex_length(DigestAlgorithm a) noexcept {
    return a == DigestAlgorithm::Md5 ? 32 : 64;
}
inline constexpr std::size_t kMaxDigestHex = 64;

// Hash contexts reused for every computation (one per worker thread: not thread-safe). Fetching
// the algorithms once keeps OpenSSL 3 from looking them up again for each hash.
class DigestHasher {
  public:
    DigestHasher() noexcept;
    ~DigestHasher();
    DigestHasher(const DigestHasher&) = delete;
    DigestHasher& operator=(const DigestHasher&) = delete;

    // False when OpenSSL could not provide MD5 and SHA-256 (every call below then fails).
    [[nodiscard]] bool ok() const noexcept { return ok_; }

    // Writes the lower-case hex of H(parts[0] ":" parts[1] ":" ...) into `out` (room for
    // hex_length(a) characters); returns that length, or 0 on failure.
    [[nodiscard]] std::size_t hex(DigestAlgorithm a, std::span<const std::string_view> parts,
                                  char* out) noexcept;
    // SHA-256 of the concatenation of `parts` (no separator) into `out`. False on failure.
    [[nodiscard]] bool sha256(std::span<const std::string_view> parts,
                              std::array<unsigned char, 32>& out) noexcept;

  private:
    bool digest(const evp_md_st* md, std::span<const std::string_view> parts, std::string_view sep,
                unsigned char* out, unsigned* len) noexcept;
    evp_md_st* md5_ = nullptr;
    evp_md_st* sha256_ = nullptr;
    evp_md_ctx_st* ctx_ = nullptr;
    bool ok_ = false;
};

// The inputs of a digest response with qop=auth (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1).
struct DigestInput {
    std::string_view ha1;  // hex of H(username:realm:password), as stored
    std::string_view nonce;
    std::string_view nc;  // 8 hex digits, as the client wrote them
    std::string_view cnonce;
    std::string_view qop;     // "auth"
    std::string_view method;  // the request's method
    std::string_view uri;     // the uri parameter of the credentials
};
// Writes the expected response, H(HA1:nonce:nc:cnonce:qop:H(method:uri)) in lower-case hex, into
// `out` (room for hex_length(a)); returns its length, or 0 on failure.
[[nodiscard]] std::size_t digest_response(DigestHasher& h, DigestAlgorithm a, const DigestInput& in,
                                          char* out) noexcept;

// True when `given` (a response from the wire; hex in either case) equals `expected` (lower-case
// hex). The contents are compared with CRYPTO_memcmp, in time independent of where they differ;
// only the lengths, which are public, are compared directly.
[[nodiscard]] bool digests_equal(std::string_view expected, std::string_view given) noexcept;

// HMAC-SHA256 (RFC 2104) under one key, its pads computed once.
class HmacSha256 {
  public:
    explicit HmacSha256(std::string_view key) noexcept;
    // HMAC of the concatenation of `parts` into `out`. False on failure.
    [[nodiscard]] bool mac(DigestHasher& h, std::span<const std::string_view> parts,
                           std::array<unsigned char, 32>& out) const noexcept;

  private:
    std::array<unsigned char, 64> ipad_{};
    std::array<unsigned char, 64> opad_{};
};

// Stateless nonces (DESIGN §5): "<issued, 8 hex: unix seconds><16 hex random><32 hex MAC>", the
// MAC being HMAC-SHA256 (first 16 bytes) over the issue time, the random part and the realm under
// a secret every registrar instance shares, so any instance verifies any instance's nonce without
// shared state. The random part makes two challenges of one second differ (the nonce-count record
// is per nonce).
inline constexpr std::size_t kNonceLength = 56;

// Writes a nonce issued at `now_s` for `realm` into `out` (kNonceLength characters). `random` are
// the 8 unpredictable bytes. False on failure.
[[nodiscard]] bool make_nonce(DigestHasher& h, const HmacSha256& key, uint32_t now_s,
                              std::span<const unsigned char, 8> random, std::string_view realm,
                              char* out) noexcept;

enum class NonceStatus : uint8_t {
    Fresh,    // ours, for this realm, within its lifetime
    Stale,    // ours and for this realm, but older than the lifetime (answer stale=true)
    Invalid,  // malformed, another secret, another realm, or issued in the future
};
// Checks `nonce` against `realm` at `now_s`. A nonce issued more than `max_skew_s` after `now_s`
// (another instance's clock) is Invalid. `issued_s` gets the issue time of a Fresh or Stale one.
[[nodiscard]] NonceStatus check_nonce(DigestHasher& h, const HmacSha256& key,
                                      std::string_view nonce, std::string_view realm,
                                      uint32_t now_s, uint32_t lifetime_s, uint32_t max_skew_s,
                                      uint32_t& issued_s) noexcept;

// Parses a nonce-count (8 hex digits, RFC 7616 §3.4). False otherwise.
[[nodiscard]] bool parse_nonce_count(std::string_view text, uint32_t& out) noexcept;

}  // namespace sipr::registrar
