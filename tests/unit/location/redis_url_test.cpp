// Redis credentials never leak into a message: the URL parser's errors and redact_redis_urls(),
// which masks what a command-line parser's error may quote.
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "sipr/location/redis_client.h"

namespace {

using namespace sipr::location;

struct Url {
    bool ok = false;
    RedisUrl url;
    std::string error;
};

Url parse(std::string_view text) {
    Url u;
    u.ok = parse_redis_url(text, u.url, u.error);
    return u;
}

}  // namespace

TEST_SUITE_BEGIN("location");

TEST_CASE("parse_redis_url: a '/' in the password; errors never quote the password") {
    Url u = parse("redis://alice:pa/ss@10.0.0.1:6380/3");
    REQUIRE(u.ok);
    CHECK(u.url.user == "alice");
    CHECK(u.url.password == "pa/ss");
    CHECK(u.url.port == 6380);
    CHECK(u.url.db == 3);
    const char* bad[] = {
        "redis://:se/cret-pw@10.0.0.1:port", "redis://:secret-pw@10.0.0.1/x",
        "rediss://:secret-pw@10.0.0.1",      "http://user:secret-pw@10.0.0.1",
        ":secret-pw@10.0.0.1:6379",
    };
    for (const char* text : bad) {
        CAPTURE(text);
        u = parse(text);
        CHECK_FALSE(u.ok);
        CHECK(u.error.find("secret-pw") == std::string::npos);
        CHECK(u.error.find("cret-pw") == std::string::npos);
    }
}

TEST_CASE("redact_redis_urls: masks the password of every Redis URL in a text") {
    CHECK(redact_redis_urls("argument redis://alice:s3cr3t@10.0.0.1:6379/2 was not expected") ==
          "argument redis://alice:***@10.0.0.1:6379/2 was not expected");
    CHECK(redact_redis_urls("'redis://:s3cr3t@h' and \"REDIS://tool-pw@h\"") ==
          "'redis://:***@h' and \"REDIS://***@h\"");
    CHECK(redact_redis_urls("rediss://u:p@ss/w@h:1 redis://h:2") ==
          "rediss://u:***@h:1 redis://h:2");
    // Other URLs and text without a URL are left alone.
    CHECK(redact_redis_urls("sip:alice:x@example.com http://u:p@h") ==
          "sip:alice:x@example.com http://u:p@h");
    CHECK(redact_redis_urls("") == "");
    CHECK(redact_redis_urls("://") == "://");
    CHECK(redact_redis_urls("redis://") == "redis://");
    CHECK(redact_redis_urls("x redis://@") == "x redis://***@");
}

TEST_SUITE_END();
