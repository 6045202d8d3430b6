// The pure parts of Redis beyond one node (DESIGN §7): --redis's sentinel:// and cluster://
// forms, the Cluster hash slot, and the parsers of -MOVED/-ASK and CLUSTER SLOTS.
#include <doctest/doctest.h>

#include <hiredis/hiredis.h>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/location/redis_client.h"
#include "sipr/location/redis_cluster.h"
#include "sipr/location/schema.h"

namespace {

using namespace sipr::location;

struct Target {
    bool ok = false;
    RedisTarget t;
    std::string error;
};

Target target(std::string_view text) {
    Target r;
    r.ok = parse_redis_target(text, r.t, r.error);
    return r;
}

// A reply tree built by hand, as hiredis hands it over.
struct Tree {
    std::vector<std::unique_ptr<redisReply>> nodes;
    std::vector<std::unique_ptr<redisReply*[]>> arrays;
    std::vector<std::string> strings;

    Tree() { strings.reserve(64); }
    redisReply* integer(long long v) {
        auto r = std::make_unique<redisReply>();
        std::memset(r.get(), 0, sizeof(redisReply));
        r->type = REDIS_REPLY_INTEGER;
        r->integer = v;
        nodes.push_back(std::move(r));
        return nodes.back().get();
    }
    redisReply* string(std::string s) {
        strings.push_back(std::move(s));
        auto r = std::make_unique<redisReply>();
        std::memset(r.get(), 0, sizeof(redisReply));
        r->type = REDIS_REPLY_STRING;
        r->str = strings.back().data();
        r->len = strings.back().size();
        nodes.push_back(std::move(r));
        return nodes.back().get();
    }
    redisReply* array(std::vector<redisReply*> items) {
        auto r = std::make_unique<redisReply>();
        std::memset(r.get(), 0, sizeof(redisReply));
        r->type = REDIS_REPLY_ARRAY;
        r->elements = items.size();
        arrays.push_back(std::make_unique<redisReply*[]>(items.size() + 1));
        for (std::size_t i = 0; i < items.size(); ++i) arrays.back()[i] = items[i];
        r->element = arrays.back().get();
        nodes.push_back(std::move(r));
        return nodes.back().get();
    }
};

}  // namespace

TEST_SUITE_BEGIN("location");

TEST_CASE("parse_redis_target: redis:// is one node") {
    Target r = target("redis://:pw@10.0.0.1:6380/2");
    REQUIRE(r.ok);
    CHECK(r.t.mode == RedisMode::Single);
    CHECK(r.t.url.host == "10.0.0.1");
    CHECK(r.t.url.port == 6380);
    CHECK(r.t.url.db == 2);
    CHECK(r.t.url.password == "pw");
}

TEST_CASE("parse_redis_target: sentinel:// lists Sentinels and names the primary") {
    Target r = target("sentinel://alice:s3/c,r@et@10.0.0.1:26380,10.0.0.2,[::1]:26381/mymaster");
    REQUIRE(r.ok);
    CHECK(r.t.mode == RedisMode::Sentinel);
    CHECK(r.t.master_name == "mymaster");
    CHECK(r.t.url.user == "alice");
    CHECK(r.t.url.password == "s3/c,r@et");
    REQUIRE(r.t.seeds.size() == 3);
    CHECK(r.t.seeds[0] == RedisEndpoint{"10.0.0.1", 26380});
    CHECK(r.t.seeds[1] == RedisEndpoint{"10.0.0.2", 26379});  // a Sentinel's default port
    CHECK(r.t.seeds[2] == RedisEndpoint{"::1", 26381});
    CHECK(redacted(r.t) ==
          "sentinel://alice:***@10.0.0.1:26380,10.0.0.2:26379,[::1]:26381/mymaster");
}

TEST_CASE("parse_redis_target: cluster:// lists seed nodes") {
    Target r = target("cluster://127.0.0.1:7000,127.0.0.1:7001,localhost");
    REQUIRE(r.ok);
    CHECK(r.t.mode == RedisMode::Cluster);
    REQUIRE(r.t.seeds.size() == 3);
    CHECK(r.t.seeds[1] == RedisEndpoint{"127.0.0.1", 7001});
    CHECK(r.t.seeds[2] == RedisEndpoint{"127.0.0.1", 6379});
    CHECK(r.t.url.host == "127.0.0.1");
    CHECK(r.t.url.port == 7000);
    CHECK(redacted(r.t) == "cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:6379");
}

TEST_CASE("parse_redis_target: failures say what is wrong and never quote the password") {
    const char* bad[] = {
        "sentinel://:secret-pw@10.0.0.1:26379",          // no primary name
        "sentinel://:secret-pw@10.0.0.1:26379/a/b",      // two names
        "sentinel://:secret-pw@/mymaster",               // no host
        "cluster://:secret-pw@10.0.0.1:7000/1",          // a database
        "cluster://:secret-pw@10.0.0.1:7000,,10.0.0.2",  // an empty host
        "cluster://:secret-pw@10.0.0.1:99999",           // a bad port
        "cluster://:secret-pw@::1:7000",                 // IPv6 without brackets
    };
    for (const char* text : bad) {
        CAPTURE(text);
        Target r = target(text);
        CHECK_FALSE(r.ok);
        CHECK_FALSE(r.error.empty());
        CHECK(r.error.find("secret-pw") == std::string::npos);
    }
    CHECK(target("sentinel://10.0.0.1").error.find("mastername") != std::string::npos);
}

TEST_CASE("redact_redis_urls masks sentinel:// and cluster:// passwords") {
    CHECK(redact_redis_urls("--redis sentinel://u:secret@h:1,h:2/m bad") ==
          "--redis sentinel://u:***@h:1,h:2/m bad");
    CHECK(redact_redis_urls("cluster://:secret@h:7000") == "cluster://:***@h:7000");
}

TEST_CASE("key_slot: CRC16 over the hash tag, as Redis Cluster computes it") {
    // Values from CLUSTER KEYSLOT on Redis 7.0 and from the cluster specification.
    CHECK(crc16_xmodem("123456789") == 0x31C3);
    CHECK(key_slot("foo") == 12182);
    CHECK(key_slot("sipr:loc:{sip:alice@example.com}") == 827);
    CHECK(key_slot("sip:alice@example.com") == 827);
    // Every key of one AOR shares its slot (DESIGN §6).
    const std::string aor = "sip:bob@example.net";
    CHECK(key_slot(location_key(aor)) == key_slot(subscriber_key(aor)));
    CHECK(key_slot(location_key(aor)) == key_slot(aor));
    // The first '{' counts, with the first '}' after it; an empty tag hashes the whole key.
    CHECK(key_slot("a{b}c{d}") == key_slot("b"));
    CHECK(key_slot("{}x") == (crc16_xmodem("{}x") & 16383));
    CHECK(key_slot("x{y") == (crc16_xmodem("x{y") & 16383));
    CHECK(key_slot("x}{y}") == key_slot("y"));
}

TEST_CASE("parse_cluster_redirect: MOVED and ASK") {
    ClusterRedirect r;
    REQUIRE(parse_cluster_redirect("MOVED 3999 127.0.0.1:6381", r));
    CHECK_FALSE(r.ask);
    CHECK(r.slot == 3999);
    CHECK(r.to == RedisEndpoint{"127.0.0.1", 6381});
    REQUIRE(parse_cluster_redirect("ASK 16383 [::1]:7002", r));
    CHECK(r.ask);
    CHECK(r.slot == 16383);
    CHECK(r.to == RedisEndpoint{"::1", 7002});
    REQUIRE(parse_cluster_redirect("MOVED 1 :7000", r));  // a node that does not know its address
    CHECK(r.to.host.empty());
    CHECK(r.to.port == 7000);
    for (const char* bad : {"MOVED", "MOVED 16384 h:1", "MOVED x h:1", "MOVED 1 h", "MOVED 1 h:0",
                            "ASK 1 h:70000", "NOSCRIPT No matching script", "ERR MOVED 1 h:1"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_cluster_redirect(bad, r));
    }
}

TEST_CASE("parse_cluster_slots: ranges and their primaries") {
    Tree t;
    redisReply* reply = t.array({
        t.array({t.integer(0), t.integer(5460),
                 t.array({t.string("127.0.0.1"), t.integer(7000), t.string("id0"), t.array({})}),
                 t.array({t.string("127.0.0.1"), t.integer(7003), t.string("id3")})}),
        t.array({t.integer(5461), t.integer(16383),
                 t.array({t.string(""), t.integer(7001), t.string("id1")})}),
    });
    std::vector<SlotRange> out;
    REQUIRE(parse_cluster_slots(reply, RedisEndpoint{"10.0.0.9", 7001}, out));
    REQUIRE(out.size() == 2);
    CHECK(out[0].first == 0);
    CHECK(out[0].last == 5460);
    CHECK(out[0].primary == RedisEndpoint{"127.0.0.1", 7000});
    CHECK(out[1].first == 5461);
    CHECK(out[1].last == 16383);
    CHECK(out[1].primary == RedisEndpoint{"10.0.0.9", 7001});  // empty host: the node asked

    Tree bad;
    redisReply* inverted = bad.array({bad.array(
        {bad.integer(10), bad.integer(5), bad.array({bad.string("h"), bad.integer(1)})})});
    CHECK_FALSE(parse_cluster_slots(inverted, RedisEndpoint{}, out));
    redisReply* past_end = bad.array({bad.array(
        {bad.integer(0), bad.integer(16384), bad.array({bad.string("h"), bad.integer(1)})})});
    CHECK_FALSE(parse_cluster_slots(past_end, RedisEndpoint{}, out));
    redisReply* no_port = bad.array({bad.array(
        {bad.integer(0), bad.integer(1), bad.array({bad.string("h"), bad.string("1")})})});
    CHECK_FALSE(parse_cluster_slots(no_port, RedisEndpoint{}, out));
    CHECK_FALSE(parse_cluster_slots(bad.string("ERR"), RedisEndpoint{}, out));
}

TEST_SUITE_END();
