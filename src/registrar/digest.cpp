#include "sipr/registrar/digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>

#include "sipr/base/ascii.h"

namespace sipr::registrar {

namespace {

constexpr char kHex[] = "0123456789abcdef";

void to_hex(const unsigned char* raw, std::size_t n, char* out) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        out[2 * i] = kHex[raw[i] >> 4];
        out[2 * i + 1] = kHex[raw[i] & 0xf];
    }
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Domain separation: a nonce MAC is never the MAC of anything else keyed by the same secret.
constexpr std::string_view kNonceLabel = "sipr-nonce-1:";
constexpr std::size_t kIssuedHex = 8;
constexpr std::size_t kRandomHex = 16;
constexpr std::size_t kMacBytes = 16;

bool nonce_mac(DigestHasher& h, const HmacSha256& key, std::string_view issued_and_random,
               std::string_view realm, std::array<unsigned char, 32>& mac) noexcept {
    const std::string_view parts[] = {kNonceLabel, issued_and_random, ":", realm};
    return key.mac(h, parts, mac);
}

}  // namespace

std::string_view algorithm_name(DigestAlgorithm a) noexcept {
    return a == DigestAlgorithm::Md5 ? "MD5" : "SHA-256";
}

bool parse_algorithm(std::string_view text, DigestAlgorithm& out) noexcept {
    if (text.empty() || base::iequals(text, "MD5")) {
        out = DigestAlgorithm::Md5;
        return true;
    }
    if (base::iequals(text, "SHA-256")) {
        out = DigestAlgorithm::Sha256;
        return true;
    }
    return false;
}

void parse_algorithm_list(std::string_view text, AlgorithmList& out) noexcept {
    out = AlgorithmList{};
    while (!text.empty()) {
        std::size_t comma = text.find(',');
        std::string_view item = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
            item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        DigestAlgorithm a;
        // parse_algorithm takes "" for MD5 (RFC 2617's default); in a list an empty item is none.
        if (!item.empty() && parse_algorithm(item, a)) out.add(a);
    }
}

DigestHasher::DigestHasher() noexcept
    : md5_(EVP_MD_fetch(nullptr, "MD5", nullptr)),
      sha256_(EVP_MD_fetch(nullptr, "SHA256", nullptr)),
      ctx_(EVP_MD_CTX_new()) {
    ok_ = md5_ != nullptr && sha256_ != nullptr && ctx_ != nullptr;
}

DigestHasher::~DigestHasher() {
    EVP_MD_CTX_free(ctx_);
    EVP_MD_free(sha256_);
    EVP_MD_free(md5_);
}

bool DigestHasher::digest(const evp_md_st* md, std::span<const std::string_view> parts,
                          std::string_view sep, unsigned char* out, unsigned* len) noexcept {
    if (!ok_ || EVP_DigestInit_ex(ctx_, md, nullptr) != 1) return false;
    bool first = true;
    for (std::string_view p : parts) {
        if (!first && !sep.empty() && EVP_DigestUpdate(ctx_, sep.data(), sep.size()) != 1)
            return false;
        first = false;
        if (!p.empty() && EVP_DigestUpdate(ctx_, p.data(), p.size()) != 1) return false;
    }
    return EVP_DigestFinal_ex(ctx_, out, len) == 1;
}

std::size_t DigestHasher::hex(DigestAlgorithm a, std::span<const std::string_view> parts,
                              char* out) noexcept {
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (!digest(a == DigestAlgorithm::Md5 ? md5_ : sha256_, parts, ":", raw, &len)) return 0;
    if (2 * static_cast<std::size_t>(len) != hex_length(a)) return 0;
    to_hex(raw, len, out);
    return 2 * static_cast<std::size_t>(len);
}

bool DigestHasher::sha256(std::span<const std::string_view> parts,
                          std::array<unsigned char, 32>& out) noexcept {
    unsigned len = 0;
    unsigned char raw[EVP_MAX_MD_SIZE];
    if (!digest(sha256_, parts, {}, raw, &len) || len != out.size()) return false;
    std::memcpy(out.data(), raw, out.size());
    return true;
}

std::size_t digest_response(DigestHasher& h, DigestAlgorithm a, const DigestInput& in,
                            char* out) noexcept {
    // RFC 7616 §3.4.1 (qop=auth): response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2),
    // HA2 = H(method ":" uri), each H in lower-case hex.
    char ha2[kMaxDigestHex];
    const std::string_view a2[] = {in.method, in.uri};
    std::size_t n = h.hex(a, a2, ha2);
    if (n == 0) return 0;
    const std::string_view kd[] = {in.ha1,    in.nonce, in.nc,
                                   in.cnonce, in.qop,   std::string_view(ha2, n)};
    return h.hex(a, kd, out);
}

bool digests_equal(std::string_view expected, std::string_view given) noexcept {
    if (expected.size() != given.size() || given.size() > kMaxDigestHex) return false;
    // RFC 7616 asks for lower-case hex; accept upper case from lenient clients.
    char lowered[kMaxDigestHex];
    for (std::size_t i = 0; i < given.size(); ++i) lowered[i] = base::to_lower(given[i]);
    return CRYPTO_memcmp(expected.data(), lowered, given.size()) == 0;
}

HmacSha256::HmacSha256(std::string_view key) noexcept {
    // RFC 2104: a key longer than the block is hashed first; shorter ones are padded with zeros.
    std::array<unsigned char, 64> k{};
    if (key.size() > k.size()) {
        std::array<unsigned char, 32> hashed{};
        unsigned len = 0;
        if (EVP_Digest(key.data(), key.size(), hashed.data(), &len, EVP_sha256(), nullptr) == 1)
            std::memcpy(k.data(), hashed.data(), hashed.size());
    } else {
        std::memcpy(k.data(), key.data(), key.size());
    }
    for (std::size_t i = 0; i < k.size(); ++i) {
        ipad_[i] = static_cast<unsigned char>(k[i] ^ 0x36);
        opad_[i] = static_cast<unsigned char>(k[i] ^ 0x5c);
    }
    OPENSSL_cleanse(k.data(), k.size());
}

bool HmacSha256::mac(DigestHasher& h, std::span<const std::string_view> parts,
                     std::array<unsigned char, 32>& out) const noexcept {
    // HMAC = H((K ^ opad) || H((K ^ ipad) || message)).
    constexpr std::size_t kMaxParts = 8;
    if (parts.size() + 1 > kMaxParts) return false;
    std::array<std::string_view, kMaxParts> inner{};
    inner[0] = std::string_view(reinterpret_cast<const char*>(ipad_.data()), ipad_.size());
    for (std::size_t i = 0; i < parts.size(); ++i) inner[i + 1] = parts[i];
    std::array<unsigned char, 32> inner_hash{};
    if (!h.sha256(std::span(inner.data(), parts.size() + 1), inner_hash)) return false;
    const std::string_view outer[] = {
        std::string_view(reinterpret_cast<const char*>(opad_.data()), opad_.size()),
        std::string_view(reinterpret_cast<const char*>(inner_hash.data()), inner_hash.size())};
    return h.sha256(outer, out);
}

bool make_nonce(DigestHasher& h, const HmacSha256& key, uint32_t now_s,
                std::span<const unsigned char, 8> random, std::string_view realm,
                char* out) noexcept {
    for (std::size_t i = 0; i < kIssuedHex; ++i)
        out[i] = kHex[(now_s >> (4 * (kIssuedHex - 1 - i))) & 0xf];
    to_hex(random.data(), random.size(), out + kIssuedHex);
    std::array<unsigned char, 32> mac{};
    if (!nonce_mac(h, key, std::string_view(out, kIssuedHex + kRandomHex), realm, mac))
        return false;
    to_hex(mac.data(), kMacBytes, out + kIssuedHex + kRandomHex);
    return true;
}

NonceStatus check_nonce(DigestHasher& h, const HmacSha256& key, std::string_view nonce,
                        std::string_view realm, uint32_t now_s, uint32_t lifetime_s,
                        uint32_t max_skew_s, uint32_t& issued_s) noexcept {
    static_assert(kIssuedHex + kRandomHex + 2 * kMacBytes == kNonceLength);
    if (nonce.size() != kNonceLength) return NonceStatus::Invalid;
    // Only what make_nonce writes: lower-case hex.
    for (char c : nonce)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return NonceStatus::Invalid;
    std::array<unsigned char, 32> mac{};
    if (!nonce_mac(h, key, nonce.substr(0, kIssuedHex + kRandomHex), realm, mac))
        return NonceStatus::Invalid;
    char want[2 * kMacBytes];
    to_hex(mac.data(), kMacBytes, want);
    if (CRYPTO_memcmp(want, nonce.data() + kIssuedHex + kRandomHex, sizeof want) != 0)
        return NonceStatus::Invalid;
    uint32_t issued = 0;
    for (std::size_t i = 0; i < kIssuedHex; ++i)
        issued = (issued << 4) | static_cast<uint32_t>(hex_value(nonce[i]));
    if (issued > now_s && issued - now_s > max_skew_s) return NonceStatus::Invalid;
    issued_s = issued;
    if (now_s > issued && now_s - issued > lifetime_s) return NonceStatus::Stale;
    return NonceStatus::Fresh;
}

bool parse_nonce_count(std::string_view text, uint32_t& out) noexcept {
    if (text.size() != 8) return false;
    uint32_t v = 0;
    for (char c : text) {
        int d = hex_value(c);
        if (d < 0) return false;
        v = (v << 4) | static_cast<uint32_t>(d);
    }
    out = v;
    return true;
}

}  // namespace sipr::registrar
