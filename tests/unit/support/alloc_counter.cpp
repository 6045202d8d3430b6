// The counting operator new and delete of support/alloc_counter.h, for the whole unit test binary.
#include "support/alloc_counter.h"

#include <execinfo.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <new>

namespace sipr::test {
namespace {

// Constant-initialised, so touching them from operator new needs no TLS or static set-up.
thread_local bool t_counting = false;
std::atomic<std::size_t> g_allocations{0};

// The first few counted allocations' return addresses (backtrace() into fixed storage: no
// allocation inside operator new once primed).
constexpr std::size_t kStacks = 6;
constexpr int kFrames = 24;
std::array<std::array<void*, kFrames>, kStacks> g_stacks{};
std::array<int, kStacks> g_depth{};
bool g_primed = false;

void note() noexcept {
    if (!t_counting) return;
    const std::size_t n = g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (n < kStacks && g_primed) {
        t_counting = false;  // backtrace() itself must not count
        g_depth[n] = backtrace(g_stacks[n].data(), kFrames);
        t_counting = true;
    }
}

void* allocate(std::size_t n) noexcept {
    note();
    return std::malloc(n == 0 ? 1 : n);
}

void* allocate_aligned(std::size_t n, std::align_val_t al) noexcept {
    note();
    const auto align = std::max(static_cast<std::size_t>(al), sizeof(void*));
    // aligned_alloc wants a size that is a multiple of the alignment.
    const std::size_t size = (n == 0 ? align : (n + align - 1) / align * align);
    return std::aligned_alloc(align, size);
}

}  // namespace

void start_counting() noexcept {
    if (!g_primed) {
        // The first backtrace() loads the unwinder, which allocates: do it outside the count.
        std::array<void*, 2> frames{};
        (void)backtrace(frames.data(), 2);
        g_primed = true;
    }
    g_depth.fill(0);
    g_allocations.store(0, std::memory_order_relaxed);
    t_counting = true;
}

std::size_t stop_counting() noexcept {
    t_counting = false;
    return g_allocations.load(std::memory_order_relaxed);
}

std::string counted_stacks() {
    std::string out;
    for (std::size_t i = 0; i < kStacks; ++i) {
        if (g_depth[i] == 0) continue;
        char** names = backtrace_symbols(g_stacks[i].data(), g_depth[i]);
        for (int f = 0; f < g_depth[i]; ++f) {
            out += names != nullptr ? names[f] : "?";
            out += '\n';
        }
        std::free(names);
        out += '\n';
    }
    return out;
}

}  // namespace sipr::test

// ------------------------------------------------------------------ replaced allocation functions

void* operator new(std::size_t n) {
    void* p = sipr::test::allocate(n);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}
void* operator new[](std::size_t n) {
    void* p = sipr::test::allocate(n);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    return sipr::test::allocate(n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    return sipr::test::allocate(n);
}
void* operator new(std::size_t n, std::align_val_t al) {
    void* p = sipr::test::allocate_aligned(n, al);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}
void* operator new[](std::size_t n, std::align_val_t al) {
    void* p = sipr::test::allocate_aligned(n, al);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return sipr::test::allocate_aligned(n, al);
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    return sipr::test::allocate_aligned(n, al);
}

void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    std::free(p);
}
