// BufferWriter: appends into a caller-owned buffer, never past it; an append that does not fit
// marks the writer overflowed and every later append is ignored until truncate().
#include "sipr/base/buffer_writer.h"

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

namespace {

using sipr::base::BufferWriter;

constexpr char kCanary = '\x5a';

template <std::size_t N>
std::array<char, N> canary_array() {
    std::array<char, N> a{};
    a.fill(kCanary);
    return a;
}

template <std::size_t N>
bool untouched_from(const std::array<char, N>& a, std::size_t from) {
    for (std::size_t i = from; i < N; ++i)
        if (a[i] != kCanary) return false;
    return true;
}

}  // namespace

TEST_CASE("BufferWriter: starts empty") {
    auto a = canary_array<8>();
    BufferWriter w(std::span<char>(a.data(), 4));
    CHECK(w.size() == 0u);
    CHECK(w.capacity() == 4u);
    CHECK_FALSE(w.overflow());
    CHECK(w.view().empty());
}

TEST_CASE("BufferWriter: exact fit is not an overflow") {
    auto a = canary_array<16>();
    BufferWriter w(std::span<char>(a.data(), 5));
    w.append("hel");
    w.append("lo");
    CHECK_FALSE(w.overflow());
    CHECK(w.size() == 5u);
    CHECK(w.view() == "hello");
    CHECK(untouched_from(a, 5));
    // Appending nothing to a full buffer is still fine.
    w.append(std::string_view{});
    CHECK_FALSE(w.overflow());
    CHECK(w.size() == 5u);
}

TEST_CASE("BufferWriter: one byte too many overflows and writes nothing of it") {
    auto a = canary_array<16>();
    BufferWriter w(std::span<char>(a.data(), 5));
    w.append("hello!");
    CHECK(w.overflow());
    CHECK(w.size() == 0u);
    CHECK(w.view().empty());
    CHECK(untouched_from(a, 0));  // the append is all or nothing
}

TEST_CASE("BufferWriter: overflow sticks") {
    auto a = canary_array<16>();
    BufferWriter w(std::span<char>(a.data(), 5));
    w.append("abc");
    w.append("def");  // does not fit
    CHECK(w.overflow());
    CHECK(w.size() == 3u);
    CHECK(w.view() == "abc");
    w.append("x");  // would fit, but the writer is overflowed
    w.append('y');
    w.append_uint(1);
    CHECK(w.overflow());
    CHECK(w.size() == 3u);
    CHECK(w.view() == "abc");
    CHECK(untouched_from(a, 3));
}

TEST_CASE("BufferWriter: append(char)") {
    auto a = canary_array<4>();
    BufferWriter w(std::span<char>(a.data(), 2));
    w.append('a');
    w.append('b');
    CHECK(w.view() == "ab");
    CHECK_FALSE(w.overflow());
    w.append('c');
    CHECK(w.overflow());
    CHECK(w.view() == "ab");
    CHECK(untouched_from(a, 2));
}

TEST_CASE("BufferWriter: zero-capacity buffer") {
    BufferWriter w(std::span<char>{});
    w.append(std::string_view{});
    CHECK_FALSE(w.overflow());
    CHECK(w.size() == 0u);
    w.append('x');
    CHECK(w.overflow());
    CHECK(w.size() == 0u);
}

TEST_CASE("BufferWriter: truncate to a mark clears the overflow") {
    auto a = canary_array<16>();
    BufferWriter w(std::span<char>(a.data(), 8));
    w.append("head:");
    const std::size_t mark = w.size();
    w.append("toolong");  // 5 + 7 > 8
    CHECK(w.overflow());
    w.truncate(mark);
    CHECK_FALSE(w.overflow());
    CHECK(w.size() == mark);
    w.append("ok");
    CHECK(w.view() == "head:ok");
    CHECK_FALSE(w.overflow());

    // Truncating below the current size cuts the output.
    w.truncate(2);
    CHECK(w.view() == "he");
    CHECK(w.size() == 2u);

    // A mark beyond the current size leaves the size alone (and clears the flag).
    w.append("0123456");  // 2 + 7 > 8
    CHECK(w.overflow());
    w.truncate(7);
    CHECK(w.size() == 2u);
    CHECK_FALSE(w.overflow());
    CHECK(w.view() == "he");

    w.truncate(0);
    CHECK(w.size() == 0u);
    CHECK(w.view().empty());
    CHECK(untouched_from(a, 8));
}

TEST_CASE("BufferWriter: append_uint edge values") {
    std::array<char, 32> a{};
    {
        BufferWriter w(a);
        w.append_uint(0);
        CHECK(w.view() == "0");
    }
    {
        BufferWriter w(a);
        w.append_uint(7);
        w.append(',');
        w.append_uint(10);
        w.append(',');
        w.append_uint(65535);
        w.append(',');
        w.append_uint(4294967295u);
        w.append(',');
        w.append_uint(4294967296ULL);
        CHECK(w.view() == "7,10,65535,4294967295,4294967296");
    }
    {
        BufferWriter w(a);
        w.append_uint(std::numeric_limits<uint64_t>::max());
        CHECK(w.view() == "18446744073709551615");
        CHECK(w.size() == 20u);
    }
    {
        BufferWriter w(a);
        w.append_uint(10000000000000000000ULL);
        CHECK(w.view() == "10000000000000000000");
    }
}

TEST_CASE("BufferWriter: append_uint fits exactly or not at all") {
    auto a = canary_array<32>();
    {
        BufferWriter w(std::span<char>(a.data(), 20));
        w.append_uint(std::numeric_limits<uint64_t>::max());
        CHECK_FALSE(w.overflow());
        CHECK(w.view() == "18446744073709551615");
        CHECK(untouched_from(a, 20));
    }
    a.fill(kCanary);
    {
        BufferWriter w(std::span<char>(a.data(), 19));
        w.append_uint(std::numeric_limits<uint64_t>::max());
        CHECK(w.overflow());
        CHECK(w.size() == 0u);
        CHECK(untouched_from(a, 0));
    }
    a.fill(kCanary);
    {
        BufferWriter w(std::span<char>(a.data(), 3));
        w.append_uint(99);
        w.append_uint(1);
        CHECK(w.view() == "991");
        w.append_uint(0);
        CHECK(w.overflow());
        CHECK(w.view() == "991");
        CHECK(untouched_from(a, 3));
    }
}

TEST_CASE("BufferWriter: view points into the caller's buffer") {
    std::array<char, 8> a{};
    BufferWriter w(a);
    w.append("abc");
    CHECK(w.view().data() == a.data());
    CHECK(a[0] == 'a');
    CHECK(a[2] == 'c');
}
