#include "sipr/base/siphash.h"

namespace sipr::base {
namespace {

constexpr uint64_t rotl(uint64_t x, int b) noexcept {
    return (x << b) | (x >> (64 - b));
}

}  // namespace

SipHasher::SipHasher(SipKey key) noexcept
    : v0_(key.k0 ^ 0x736f6d6570736575ULL),
      v1_(key.k1 ^ 0x646f72616e646f6dULL),
      v2_(key.k0 ^ 0x6c7967656e657261ULL),
      v3_(key.k1 ^ 0x7465646279746573ULL) {}

void SipHasher::compress(uint64_t m) noexcept {
    v3_ ^= m;
    for (int i = 0; i < 2; ++i) {  // c = 2 compression rounds
        v0_ += v1_;
        v1_ = rotl(v1_, 13);
        v1_ ^= v0_;
        v0_ = rotl(v0_, 32);
        v2_ += v3_;
        v3_ = rotl(v3_, 16);
        v3_ ^= v2_;
        v0_ += v3_;
        v3_ = rotl(v3_, 21);
        v3_ ^= v0_;
        v2_ += v1_;
        v1_ = rotl(v1_, 17);
        v1_ ^= v2_;
        v2_ = rotl(v2_, 32);
    }
    v0_ ^= m;
}

void SipHasher::update(std::string_view bytes) noexcept {
    for (unsigned char c : bytes) {
        tail_ |= static_cast<uint64_t>(c) << (8 * tail_len_);
        ++total_;
        if (++tail_len_ == 8) {
            compress(tail_);
            tail_ = 0;
            tail_len_ = 0;
        }
    }
}

uint64_t SipHasher::finish() const noexcept {
    SipHasher s = *this;
    uint64_t b = (s.total_ & 0xff) << 56 | s.tail_;
    s.compress(b);
    s.v2_ ^= 0xff;
    for (int i = 0; i < 4; ++i) {  // d = 4 finalisation rounds
        s.v0_ += s.v1_;
        s.v1_ = rotl(s.v1_, 13);
        s.v1_ ^= s.v0_;
        s.v0_ = rotl(s.v0_, 32);
        s.v2_ += s.v3_;
        s.v3_ = rotl(s.v3_, 16);
        s.v3_ ^= s.v2_;
        s.v0_ += s.v3_;
        s.v3_ = rotl(s.v3_, 21);
        s.v3_ ^= s.v0_;
        s.v2_ += s.v1_;
        s.v1_ = rotl(s.v1_, 17);
        s.v1_ ^= s.v2_;
        s.v2_ = rotl(s.v2_, 32);
    }
    return s.v0_ ^ s.v1_ ^ s.v2_ ^ s.v3_;
}

uint64_t siphash24(SipKey key, std::string_view bytes) noexcept {
    SipHasher h(key);
    h.update(bytes);
    return h.finish();
}

SipKey derive_sip_key(std::string_view secret) noexcept {
    return SipKey{siphash24(SipKey{0x7369707231ULL, 0x6b657930ULL}, secret),
                  siphash24(SipKey{0x7369707232ULL, 0x6b657931ULL}, secret)};
}

}  // namespace sipr::base
