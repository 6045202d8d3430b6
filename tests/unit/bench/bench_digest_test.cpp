// sip-bench's reading of a digest challenge (bench/bench_digest.h): what it answers a 401/407 with.
#include <doctest/doctest.h>

#include "../../../bench/bench_digest.h"

using sipr::bench::Challenge;
using sipr::bench::offers_auth;
using sipr::bench::parse_challenge;

TEST_CASE("parse_challenge: sip-registrard's challenge") {
    Challenge c;
    REQUIRE(parse_challenge(
        "Digest realm=\"example.com\", nonce=\"6b17839f0011\", algorithm=SHA-256, qop=\"auth\"",
        c));
    CHECK(c.realm == "example.com");
    CHECK(c.nonce == "6b17839f0011");
    CHECK(c.algorithm == "SHA-256");
    CHECK(c.qop == "auth");
    CHECK(c.opaque.empty());
}

TEST_CASE("parse_challenge: any order, scheme and names in any case, escapes kept, opaque") {
    Challenge c;
    REQUIRE(
        parse_challenge("digest  QOP=\"auth-int, auth\",opaque = \"o\\\"p\" , "
                        "NONCE=\"n,1\", realm=\"r \\\\ s\", stale=TRUE, domain=\"sip:a\"",
                        c));
    CHECK(c.realm == "r \\\\ s");
    CHECK(c.nonce == "n,1");
    CHECK(c.opaque == "o\\\"p");
    CHECK(c.algorithm.empty());  // MD5 (RFC 2617 §3.2.1)
    CHECK(c.qop == "auth-int, auth");
}

TEST_CASE("parse_challenge: refuses other schemes, broken lists, and no realm or nonce") {
    Challenge c;
    CHECK_FALSE(parse_challenge("Basic realm=\"x\"", c));
    CHECK_FALSE(parse_challenge("Digestrealm=\"x\", nonce=\"n\"", c));
    CHECK_FALSE(parse_challenge("Digest realm=\"x\", nonce=\"n", c));  // unterminated quote
    CHECK_FALSE(parse_challenge("Digest realm=\"x\", nonce", c));
    CHECK_FALSE(parse_challenge("Digest realm=\"x\"", c));
    CHECK_FALSE(parse_challenge("Digest nonce=\"n\"", c));
    CHECK_FALSE(parse_challenge("", c));
}

TEST_CASE("offers_auth: auth among the qop options, as a whole item") {
    CHECK(offers_auth("auth"));
    CHECK(offers_auth("auth-int,auth"));
    CHECK(offers_auth(" AUTH , auth-int"));
    CHECK_FALSE(offers_auth("auth-int"));
    CHECK_FALSE(offers_auth(""));
    CHECK_FALSE(offers_auth("authx"));
}
