#pragma once
// SipHash-2-4 (Aumasson & Bernstein, 2012): a keyed 64-bit pseudo-random function. Used where a
// value must be unpredictable without the key yet identical on every instance that shares it
// (the To-tag of DESIGN §4).
#include <cstdint>
#include <string_view>

namespace sipr::base {

struct SipKey {
    uint64_t k0 = 0;
    uint64_t k1 = 0;
};

// Incremental SipHash-2-4. Feeding the same bytes in any split gives the same result.
class SipHasher {
  public:
    explicit SipHasher(SipKey key) noexcept;
    void update(std::string_view bytes) noexcept;
    [[nodiscard]] uint64_t finish() const noexcept;

  private:
    void compress(uint64_t m) noexcept;
    uint64_t v0_, v1_, v2_, v3_;
    uint64_t tail_ = 0;      // pending bytes, little-endian
    unsigned tail_len_ = 0;  // 0..7
    uint64_t total_ = 0;
};

// One-shot SipHash-2-4 of `bytes` under `key`.
[[nodiscard]] uint64_t siphash24(SipKey key, std::string_view bytes) noexcept;

// Derives a key from a secret of any length (SipHash of the secret under two fixed keys), so that
// operators can configure a passphrase.
[[nodiscard]] SipKey derive_sip_key(std::string_view secret) noexcept;

}  // namespace sipr::base
