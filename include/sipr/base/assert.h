#pragma once
// Invariant checks. SIPR_ASSERT is for debug builds only; SIPR_CHECK always runs and is used only
// where going on would corrupt data. Neither is ever used to reject bad input.
#include <cstdio>
#include <cstdlib>

#define SIPR_CHECK(cond)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            std::fprintf(stderr, "sipr: check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            std::abort();                                                                        \
        }                                                                                        \
    } while (0)

#ifdef NDEBUG
#define SIPR_ASSERT(cond) ((void)0)
#else
#define SIPR_ASSERT(cond) SIPR_CHECK(cond)
#endif
