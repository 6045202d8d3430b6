#pragma once
// The location service as the services see it (DESIGN §3): asynchronous, on the caller's loop.
//
// Callback contract (STYLE.md, after libuv): a call that returns an error other than None never
// runs its callback; otherwise the callback runs exactly once, on the same loop - also on timeout
// or disconnect. It runs later, except for a lookup() answered from a near-cache
// (caching_store.h), whose callback runs before lookup() returns None. Views passed to a
// callback are valid only during the call.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/base/stats.h"
#include "sipr/location/binding.h"

namespace sipr::location {

enum class StoreError : uint8_t {
    None,
    Unavailable,      // not connected to Redis (or reconnecting)
    Timeout,          // no answer within the command timeout
    Overloaded,       // too many requests in flight
    Protocol,         // an answer that made no sense (garbage, wrong type)
    Stale,            // REGISTER refused: same Call-ID with a lower CSeq (RFC 3261 §10.3 step 7)
    TooManyContacts,  // REGISTER refused: --max-contacts reached with policy reject
};

[[nodiscard]] std::string_view store_error_text(StoreError e) noexcept;

// The kind of sipr_redis_errors_total a failed store call counts as: Timeout, Overloaded and
// Protocol as themselves, anything else (Unavailable; Stale and TooManyContacts, which are
// answers, are never counted) as Unavailable.
[[nodiscard]] base::RedisErrorKind redis_error_kind(StoreError e) noexcept;

struct LookupReply {
    StoreError error = StoreError::None;
    // Live and garbage-free bindings (expired and unparsable ones filtered out), in storage order.
    std::span<const BindingView> bindings;
    std::size_t garbage = 0;  // entries that failed to unpack (counted, never fatal)
    bool from_cache = false;  // answered by a near-cache, without asking Redis
};
using LookupCallback = void (*)(void* ctx, const LookupReply& reply) noexcept;

// One contact of a REGISTER after the registrar's decisions.
struct ContactChange {
    std::string key;         // binding_key() (binding.h)
    uint32_t expires_s = 0;  // 0 removes the binding
    std::string tail;        // pack_binding_tail() of the new binding (ignored when expires is 0)
};

struct RegisterChanges {
    std::string aor;
    bool remove_all = false;  // Contact: * with Expires: 0
    std::string call_id;
    uint32_t cseq = 0;
    std::vector<ContactChange> contacts;
    uint32_t max_contacts = 10;
    bool evict_oldest = false;  // policy evict (else reject)
    // A retransmission of an authenticated REGISTER already applied (digest_auth.h): nothing is
    // written; the reply is the bindings as they are, or Stale when what the request did is no
    // longer there (a binding removed or replaced since: a captured request cannot bring it back).
    bool retransmission = false;
    // By the operator (sip-locctl): no Call-ID/CSeq ordering; the event says src=locctl.
    bool by_operator = false;
    // The expiry sweep (Housekeeper): no contacts; only expired bindings are pruned, and the event
    // says src=sweep.
    bool sweep = false;
};

struct RegisterReply {
    StoreError error = StoreError::None;
    int64_t now_ms = 0;                     // Redis TIME at the change
    std::span<const BindingView> bindings;  // every binding after the change
};
using RegisterCallback = void (*)(void* ctx, const RegisterReply& reply) noexcept;

// What the redirect service needs: look-ups.
class LookupStore {
  public:
    virtual ~LookupStore() = default;
    // The live bindings of `aor` (normalised, DESIGN §4).
    [[nodiscard]] virtual StoreError lookup(std::string_view aor, LookupCallback cb,
                                            void* ctx) noexcept = 0;
    // True while look-ups can be served (for health probes).
    [[nodiscard]] virtual bool available() const noexcept = 0;
};

// What the registrar needs: one REGISTER applied atomically.
class RegisterStore {
  public:
    virtual ~RegisterStore() = default;
    // Applies one REGISTER atomically; the reply lists every binding after it.
    [[nodiscard]] virtual StoreError apply_register(const RegisterChanges& changes,
                                                    RegisterCallback cb, void* ctx) noexcept = 0;
    // True while REGISTERs can be applied (for health probes).
    [[nodiscard]] virtual bool available() const noexcept = 0;
};

}  // namespace sipr::location
