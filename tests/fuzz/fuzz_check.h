#pragma once
// Contract checks shared by the fuzz targets. A failed check prints what broke and aborts, which
// libFuzzer reports as a crash and saves the input for tests/fuzz/crashes/.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define SIPR_FUZZ_CHECK(cond)                                                            \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "fuzz: contract broken: %s (%s:%d)\n", #cond, __FILE__, \
                         __LINE__);                                                      \
            std::abort();                                                                \
        }                                                                                \
    } while (0)

namespace sipr::fuzz {

// True when `part` is empty or lies wholly inside `whole`: the zero-copy promise of every parser
// ("every view points into the bytes it was parsed from").
inline bool inside(std::string_view part, std::string_view whole) noexcept {
    if (part.empty()) return true;
    const auto p = reinterpret_cast<std::uintptr_t>(part.data());
    const auto w = reinterpret_cast<std::uintptr_t>(whole.data());
    return p >= w && p - w <= whole.size() && part.size() <= whole.size() - (p - w);
}

// The input as text. libFuzzer owns the bytes for the duration of one call.
inline std::string_view as_text(const uint8_t* data, std::size_t size) noexcept {
    return {reinterpret_cast<const char*>(data), size};
}

}  // namespace sipr::fuzz
