#pragma once
// Test support: counting the heap allocations a piece of code makes. alloc_counter.cpp replaces
// the global operator new and delete of the whole unit test binary with versions that forward to
// malloc/free and count the allocations of the thread that switched counting on. It sees
// operator new only: C code that calls malloc itself (hiredis, libuv) is not counted.
//
// The replacements also hold under -Db_sanitize=address,undefined and thread: the sanitizers
// intercept malloc/free underneath, and since new and delete are replaced as a matched set,
// ASan's alloc-dealloc-mismatch check still sees malloc paired with free.
#include <cstddef>
#include <string>

namespace sipr::test {

void start_counting() noexcept;
// Stops counting; returns the allocations made since start_counting().
std::size_t stop_counting() noexcept;
// The call stacks of the first few allocations counted since start_counting() (symbolised, one
// frame a line, stacks separated by a blank line), for a failing test to show where they are.
[[nodiscard]] std::string counted_stacks();

// Counts allocations made while alive; the count is read with stop().
class AllocationCounter {
  public:
    AllocationCounter() noexcept { start_counting(); }
    ~AllocationCounter() { stop_counting(); }
    AllocationCounter(const AllocationCounter&) = delete;
    AllocationCounter& operator=(const AllocationCounter&) = delete;

    std::size_t stop() noexcept { return stop_counting(); }
};

}  // namespace sipr::test
