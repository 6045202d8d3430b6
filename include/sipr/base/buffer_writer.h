#pragma once
// Appends text into a caller-owned buffer. Never writes past the buffer: once an append does not
// fit, the writer is marked overflowed, keeps its size and ignores further appends.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace sipr::base {

class BufferWriter {
  public:
    explicit BufferWriter(std::span<char> buf) noexcept : buf_(buf) {}

    void append(std::string_view s) noexcept {
        if (overflow_ || s.size() > buf_.size() - size_) {
            overflow_ = true;
            return;
        }
        if (!s.empty()) std::memcpy(buf_.data() + size_, s.data(), s.size());
        size_ += s.size();
    }
    void append(char c) noexcept { append(std::string_view(&c, 1)); }
    // Appends the decimal form of `v`.
    void append_uint(uint64_t v) noexcept {
        char tmp[20];
        std::size_t n = 0;
        do {
            tmp[sizeof tmp - 1 - n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        append(std::string_view(tmp + sizeof tmp - n, n));
    }

    // Cuts the output back to `size` bytes (a mark taken earlier) and clears the overflow flag.
    void truncate(std::size_t size) noexcept {
        if (size <= size_) size_ = size;
        overflow_ = false;
    }

    // The unused rest of the buffer, for a caller that writes in place; advance() then counts
    // what it wrote (at most spare().size()).
    [[nodiscard]] std::span<char> spare() noexcept { return buf_.subspan(size_); }
    void advance(std::size_t n) noexcept {
        if (overflow_ || n > buf_.size() - size_) {
            overflow_ = true;
            return;
        }
        size_ += n;
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return buf_.size(); }
    [[nodiscard]] bool overflow() const noexcept { return overflow_; }
    [[nodiscard]] std::string_view view() const noexcept { return {buf_.data(), size_}; }

  private:
    std::span<char> buf_;
    std::size_t size_ = 0;
    bool overflow_ = false;
};

}  // namespace sipr::base
