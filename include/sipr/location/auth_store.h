#pragma once
// The shared state of digest authentication (DESIGN §5), as the registrar's authenticator sees it:
// asynchronous, on the caller's loop, with the callback contract of store.h (a call that returns
// an error other than None never calls back; otherwise the callback runs exactly once, later).
// Every key lives in the AOR's hash slot ({aor}), so one script touches one Redis Cluster slot.
//
//   sipr:sub:{aor}            HASH   the subscriber (ha1-md5, ha1-sha256, enabled, realm,
//                                    algorithms)
//   sipr:authfail:{aor}:<src> STRING failed authentications of the AOR from one source (an IPv4
//                                    address or an IPv6 /64) in the current window (INCR; EXPIRE
//                                    window, then cool-down once the limit is reached); counted
//                                    only while sipr:sub:{aor} exists
//   sipr:nc:{aor}:<nonce>     STRING highest nonce-count accepted with that nonce (EX: the
//                                    nonce's remaining lifetime)
//   sipr:ncreq:{aor}:<nonce>  STRING "<fingerprint> <unix ms>": the request that nonce-count was
//                                    accepted for, and when (EX: as sipr:nc), so that its
//                                    retransmission can be told from a replay
#include <cstdint>
#include <string_view>

#include "sipr/location/store.h"

namespace sipr::location {

// A subscriber record, sipr:sub:{aor} (DESIGN §6), as sip-locctl user add writes it.
struct Credentials {
    bool found = false;
    bool enabled = false;         // false only when the field "enabled" is "0"
    std::string_view ha1_md5;     // hex of MD5(user:realm:password)
    std::string_view ha1_sha256;  // hex of SHA-256(user:realm:password)
    std::string_view realm;       // the realm the HA1s were computed for ("" when not recorded)
    // The digest algorithms this subscriber is challenged with and may answer, as written by
    // sip-locctl user add --algorithms ("SHA-256,MD5", most preferred first); "" when the record
    // has no such field (the registrar's --auth-algorithms then apply).
    std::string_view algorithms;
};
struct AuthFetchReply {
    StoreError error = StoreError::None;
    Credentials credentials;  // views valid only during the callback
    uint32_t failures = 0;    // failures from the asking source counted in the current window
};
using AuthFetchCallback = void (*)(void* ctx, const AuthFetchReply& reply) noexcept;

// The lock-out policy (--auth-fail-limit, --auth-cooldown).
struct AuthFailurePolicy {
    uint32_t window_s = 60;    // failures are counted per window, opened by the first one
    uint32_t limit = 5;        // the failure that reaches it starts the cool-down
    uint32_t cooldown_s = 60;  // how long the AOR then stays refused
};
struct AuthFailureReply {
    StoreError error = StoreError::None;
    uint32_t failures = 0;  // in the window, this one included
};
using AuthFailureCallback = void (*)(void* ctx, const AuthFailureReply& reply) noexcept;

struct NonceCountReply {
    StoreError error = StoreError::None;
    bool fresh = false;  // nc was above every nc seen with the nonce (now stored, with the request)
    // Not fresh, but nc is the last one accepted and `fingerprint` that request's: the same
    // request again, first accepted at `first_used_ms` (the caller's clock then). Otherwise (both
    // false) a replay. Nothing is written in either case.
    bool same_request = false;
    int64_t first_used_ms = 0;
};
using NonceCountCallback = void (*)(void* ctx, const NonceCountReply& reply) noexcept;

class AuthStore {
  public:
    virtual ~AuthStore() = default;
    // The subscriber record of `aor` and the failures from `source` (auth_source() of
    // digest_auth.h) in the current window, read atomically.
    [[nodiscard]] virtual StoreError fetch_auth(std::string_view aor, std::string_view source,
                                                AuthFetchCallback cb, void* ctx) noexcept = 0;
    // Counts one failed authentication of `aor` from `source` under `policy`, only if `aor` is a
    // subscriber (else nothing is written and the reply counts 0).
    [[nodiscard]] virtual StoreError record_auth_failure(std::string_view aor,
                                                         std::string_view source,
                                                         const AuthFailurePolicy& policy,
                                                         AuthFailureCallback cb,
                                                         void* ctx) noexcept = 0;
    // Accepts `nc` for (`aor`, `nonce`) only when it is above every nc accepted before, and then
    // records `fingerprint` (of the whole request; no spaces) and `now_ms` with it; the records
    // live `ttl_s` seconds (the nonce's remaining lifetime). An nc equal to the last accepted one
    // is reported as the same request when the fingerprint is the recorded one. Atomic across
    // every registrar.
    [[nodiscard]] virtual StoreError advance_nonce_count(std::string_view aor,
                                                         std::string_view nonce, uint32_t nc,
                                                         uint32_t ttl_s,
                                                         std::string_view fingerprint,
                                                         int64_t now_ms, NonceCountCallback cb,
                                                         void* ctx) noexcept = 0;
};

}  // namespace sipr::location
