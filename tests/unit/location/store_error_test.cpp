// The one mapping from a store's error to the kind of sipr_redis_errors_total it counts as.
#include <doctest/doctest.h>

#include "sipr/location/store.h"

using sipr::base::RedisErrorKind;
using sipr::location::redis_error_kind;
using sipr::location::StoreError;

TEST_CASE("redis_error_kind: each Redis failure as itself, the rest as unavailable") {
    CHECK(redis_error_kind(StoreError::Timeout) == RedisErrorKind::Timeout);
    CHECK(redis_error_kind(StoreError::Overloaded) == RedisErrorKind::Overloaded);
    CHECK(redis_error_kind(StoreError::Protocol) == RedisErrorKind::Protocol);
    CHECK(redis_error_kind(StoreError::Unavailable) == RedisErrorKind::Unavailable);
    CHECK(redis_error_kind(StoreError::Stale) == RedisErrorKind::Unavailable);
    CHECK(redis_error_kind(StoreError::TooManyContacts) == RedisErrorKind::Unavailable);
}
