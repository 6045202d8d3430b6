#pragma once
// The shared state of digest authentication (DESIGN §5), as the registrar's authenticator sees it:
// asynchronous, on the caller's loop, with the callback contract of store.h (a call that returns
// an error other than None never calls back; otherwise the callback runs exactly once, later).
// Every key lives in the AOR's hash slot ({aor}), so one script touches one Redis Cluster slot.
//
//   sipr:sub:{aor}            HASH   the subscriber (ha1-md5, ha1-sha256, enabled, realm,
//                                    algorithms)
//   sipr:authfail:{aor}       STRING failed authentications in the current window (INCR; EXPIRE
//                                    window, then cool-down once the limit is reached)
//   sipr:nc:{aor}:<nonce>     STRING highest nonce-count accepted with that nonce (EX: the
//                                    nonce's remaining lifetime)
#include <cstdint>
#include <string_view>

#include "sipr/location/store.h"

namespace sipr::location {

struct AuthFetchReply {
    StoreError error = StoreError::None;
    Credentials credentials;  // views valid only during the callback
    uint32_t failures = 0;    // failed authentications counted in the current window
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
    bool fresh = false;  // nc was above every nc seen with the nonce (now stored); false: a replay
};
using NonceCountCallback = void (*)(void* ctx, const NonceCountReply& reply) noexcept;

class AuthStore {
  public:
    virtual ~AuthStore() = default;
    // The subscriber record of `aor` and its failures in the current window, read atomically.
    [[nodiscard]] virtual StoreError fetch_auth(std::string_view aor, AuthFetchCallback cb,
                                                void* ctx) noexcept = 0;
    // Counts one failed authentication of `aor` under `policy`.
    [[nodiscard]] virtual StoreError record_auth_failure(std::string_view aor,
                                                         const AuthFailurePolicy& policy,
                                                         AuthFailureCallback cb,
                                                         void* ctx) noexcept = 0;
    // Accepts `nc` for (`aor`, `nonce`) only when it is above every nc accepted before; the record
    // lives `ttl_s` seconds (the nonce's remaining lifetime). Atomic across every registrar.
    [[nodiscard]] virtual StoreError advance_nonce_count(std::string_view aor,
                                                         std::string_view nonce, uint32_t nc,
                                                         uint32_t ttl_s, NonceCountCallback cb,
                                                         void* ctx) noexcept = 0;
};

}  // namespace sipr::location
