// The bound CacheTracker keeps on Redis's tracking table (issue 14): how the reply to
// CONFIG GET tracking-table-max-keys is judged. The enabling sequence itself runs against a real
// redis-server in tests/integration/test_cache.py.
#include "sipr/location/cache_tracker.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>

namespace {

using namespace sipr::location;

struct Reply {
    redisReply name{};
    redisReply value{};
    redisReply* elements[2] = {&name, &value};
    redisReply array{};
    std::string name_text = "tracking-table-max-keys";
    std::string value_text;

    explicit Reply(std::string v) : value_text(std::move(v)) {
        name.type = REDIS_REPLY_STRING;
        name.str = name_text.data();
        name.len = name_text.size();
        value.type = REDIS_REPLY_STRING;
        value.str = value_text.data();
        value.len = value_text.size();
        array.type = REDIS_REPLY_ARRAY;
        array.elements = 2;
        array.element = elements;
    }
};

TrackingBound judge(const std::string& value, uint64_t max_keys, uint64_t& current) {
    Reply r(value);
    return judge_tracking_bound(&r.array, max_keys, current);
}

}  // namespace

TEST_CASE(
    "tracking-table-max-keys: 0 is unbounded, above the bound is too much, 1..bound is kept") {
    uint64_t current = 7;
    CHECK(judge("0", 1000, current) == TrackingBound::Unbounded);
    CHECK(current == 0);
    CHECK(judge("1000000", 1000, current) == TrackingBound::Above);  // Redis's default
    CHECK(current == 1000000);
    CHECK(judge("1001", 1000, current) == TrackingBound::Above);
    CHECK(judge("1000", 1000, current) == TrackingBound::Within);
    CHECK(judge("1", 1000, current) == TrackingBound::Within);
    CHECK(current == 1);
}

TEST_CASE("tracking-table-max-keys: anything but [name, number] is unreadable") {
    uint64_t current = 7;
    CHECK(judge("", 1000, current) == TrackingBound::Unreadable);
    CHECK(judge("12x", 1000, current) == TrackingBound::Unreadable);
    CHECK(judge("-1", 1000, current) == TrackingBound::Unreadable);
    CHECK(judge("99999999999999999999999", 1000, current) == TrackingBound::Unreadable);
    CHECK(current == 7);
    CHECK(judge_tracking_bound(nullptr, 1000, current) == TrackingBound::Unreadable);
    Reply r("5");
    r.array.elements = 0;  // Redis < 6: CONFIG GET of an unknown setting is an empty array
    CHECK(judge_tracking_bound(&r.array, 1000, current) == TrackingBound::Unreadable);
    r.array.elements = 2;
    r.value.type = REDIS_REPLY_INTEGER;
    CHECK(judge_tracking_bound(&r.array, 1000, current) == TrackingBound::Unreadable);
}
