#pragma once
// The stores on a RedisRoute (DESIGN §6, §7): lookup is one HGETALL, a REGISTER is one EVALSHA
// of register.lua (sent again as EVAL on NOSCRIPT). The AuthStore
// operations are one EVALSHA each (auth_fetch.lua, auth_failure.lua, nonce_count.lua).
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "sipr/base/op_pool.h"
#include "sipr/location/auth_store.h"
#include "sipr/location/redis_client.h"
#include "sipr/location/redis_route.h"
#include "sipr/location/schema.h"
#include "sipr/location/store.h"

namespace sipr::location {

class RedisStore final : public LookupStore, public RegisterStore, public AuthStore {
  public:
    // `route` is not owned and must outlive the store; `clock_ms` gives wall-clock unix ms for
    // filtering expired bindings (nullptr: the system clock). Look-ups and credentials are
    // reads (a replica may answer them); REGISTERs and the auth scripts are writes.
    explicit RedisStore(RedisRoute& route, int64_t (*clock_ms)() noexcept = nullptr);
    // On one node.
    explicit RedisStore(RedisClient& client, int64_t (*clock_ms)() noexcept = nullptr);
    ~RedisStore() override;

    [[nodiscard]] StoreError lookup(std::string_view aor, LookupCallback cb,
                                    void* ctx) noexcept override;
    [[nodiscard]] StoreError apply_register(const RegisterChanges& changes, RegisterCallback cb,
                                            void* ctx) noexcept override;
    // Whether look-ups can be served (the health probe of sip-redirectd; sip-registrard, which
    // takes no --redis-read, has one node for both).
    [[nodiscard]] bool available() const noexcept override { return route_.read_ready(); }

    [[nodiscard]] StoreError fetch_auth(std::string_view aor, std::string_view source,
                                        AuthFetchCallback cb, void* ctx) noexcept override;
    [[nodiscard]] StoreError record_auth_failure(std::string_view aor, std::string_view source,
                                                 const AuthFailurePolicy& policy,
                                                 AuthFailureCallback cb,
                                                 void* ctx) noexcept override;
    [[nodiscard]] StoreError advance_nonce_count(std::string_view aor, std::string_view nonce,
                                                 uint32_t nc, uint32_t ttl_s,
                                                 std::string_view fingerprint, int64_t now_ms,
                                                 NonceCountCallback cb,
                                                 void* ctx) noexcept override;

    // Counters since start, read by the owner's metrics (same thread).
    struct Stats {
        uint64_t garbage_bindings = 0;
        uint64_t protocol_errors = 0;
        uint64_t script_reloads = 0;
    };
    [[nodiscard]] const Stats& stats() const noexcept { return stats_; }

    // How register.lua publishes its events (schema.h): Stream (the default) on one node or a
    // Sentinel-followed primary, Channel on a Redis Cluster, Off when turned off. Set before the
    // first REGISTER.
    void set_event_delivery(EventDelivery d) noexcept { delivery_ = d; }

  private:
    RedisStore(std::unique_ptr<SingleRoute> own, RedisRoute* route, int64_t (*clock_ms)() noexcept);
    struct LookupOp;
    struct RegisterOp;
    static void on_lookup(void* ctx, RedisError err, const redisReply* reply) noexcept;
    static void on_register(void* ctx, RedisError err, const redisReply* reply) noexcept;
    StoreError send_register(RegisterOp* op, bool full_script) noexcept;
    // Whether `reply` is NOSCRIPT and the op (its `retried`) has not sent the script whole yet;
    // then marks it and counts the reload.
    bool must_reload(const redisReply* reply, bool& retried) noexcept;

    // The auth scripts: one pooled op type, sent as EVALSHA (EVAL again after NOSCRIPT).
    enum class ScriptId : uint8_t { AuthFetch, AuthFailure, NonceCount };
    struct Script {
        std::string_view text;
        std::string sha;
    };
    struct ScriptOp;
    ScriptOp* acquire_script_op() noexcept;
    void release_script_op(ScriptOp* op) noexcept;
    StoreError start_script(ScriptOp* op) noexcept;
    // The common start of every auth script: readiness, a pooled op, `fill`, then the send.
    template <typename Fill>
    StoreError launch_script(ScriptId id, std::size_t nkeys, std::size_t nargv, void* ctx,
                             Fill&& fill) noexcept;
    StoreError send_script(ScriptOp* op, bool full_script) noexcept;
    static void on_script(void* ctx, RedisError err, const redisReply* reply) noexcept;
    void finish_script(ScriptOp* op, StoreError err, const redisReply* reply) noexcept;

    std::unique_ptr<SingleRoute> own_route_;  // with the one-node constructor
    RedisRoute& route_;
    int64_t (*clock_ms_)() noexcept;
    std::string script_sha_;
    base::OpPool<LookupOp> lookup_ops_;
    std::vector<BindingView> scratch_;  // reused for every reply: no per-lookup allocation
    std::array<Script, 3> scripts_;     // by ScriptId
    base::OpPool<ScriptOp> script_ops_;
    Stats stats_;
    EventDelivery delivery_ = EventDelivery::Stream;
};

// Wall-clock unix time in milliseconds.
[[nodiscard]] int64_t system_clock_ms() noexcept;

// SHA-1 hex of a script, as Redis names it for EVALSHA.
[[nodiscard]] std::string script_sha1(std::string_view script);

}  // namespace sipr::location
