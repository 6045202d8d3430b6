// base::OpPool: records are reused, a warm pool allocates nothing, addresses stay put.
#include "sipr/base/op_pool.h"

#include <doctest/doctest.h>

#include <set>

namespace {
struct Rec {
    int value = 0;
};
}  // namespace

TEST_CASE("OpPool: a released record is handed out again, not a new one") {
    sipr::base::OpPool<Rec> pool;
    Rec* a = pool.acquire();
    a->value = 7;
    CHECK(pool.size() == 1);
    CHECK(pool.in_use() == 1);
    pool.release(a);
    CHECK(pool.in_use() == 0);
    Rec* b = pool.acquire();
    CHECK(b == a);
    CHECK(b->value == 7);  // not reset: the caller sets what it reads
    CHECK(pool.size() == 1);
}

TEST_CASE("OpPool: grows only while every record is in use; addresses are stable") {
    sipr::base::OpPool<Rec> pool;
    std::set<Rec*> seen;
    Rec* held[5];
    for (Rec*& r : held) {
        r = pool.acquire();
        seen.insert(r);
    }
    CHECK(seen.size() == 5);
    CHECK(pool.size() == 5);
    for (Rec* r : held) pool.release(r);
    // The same five come back, in any order, and no sixth is made.
    for (int i = 0; i < 5; ++i) CHECK(seen.count(pool.acquire()) == 1);
    CHECK(pool.size() == 5);
    CHECK(pool.in_use() == 5);
}
