#pragma once
// Keeps one worker's near-cache correct with Redis client-side caching (DESIGN §7; Redis >= 6,
// RESP2 with redirection, as hiredis 0.14 has no RESP3):
//
// - a second connection, the invalidation connection, is named (CLIENT SETNAME), learns its
//   CLIENT ID and SUBSCRIBEs to __redis__:invalidate, again on every reconnect;
// - when it and the worker's data connection are both Ready, the data connection sends
//   CLIENT TRACKING ON REDIRECT <id>: Redis then remembers every key the data connection reads
//   and publishes the key's name to the invalidation connection when it changes (a null
//   message for FLUSHALL / FLUSHDB);
// - the cache is enabled only once Redis confirmed tracking, and flushed and disabled the moment
//   either connection leaves Ready (a new data connection is not tracked; a new invalidation
//   connection has another id; a restarted Redis forgot everything), until tracking is
//   confirmed again.
//
//   Off --both Ready--> Enabling --"+OK"--> On
//    ^                     |  error: retry after a second   |
//    \---------------------+-- either connection not Ready -/   (flush, disable)
#include <uv.h>

#include <string>

#include "sipr/location/caching_store.h"
#include "sipr/location/redis_client.h"

namespace sipr::location {

inline constexpr std::string_view kInvalidationChannel = "__redis__:invalidate";

class CacheTracker {
public:
    enum class State : uint8_t { Off, Enabling, On };
    // Told of every change of state, with a reason for Off ("" otherwise), for logs.
    using ChangeFn = void (*)(void* ctx, State state, std::string_view why) noexcept;

    // `data` and `cache` are not owned and must outlive this; `inval_opts` configure the
    // invalidation connection (its client_name names it in CLIENT LIST).
    CacheTracker(uv_loop_t* loop, RedisClient& data, CachingStore& cache, const RedisUrl& url,
                 RedisOptions inval_opts);
    ~CacheTracker();
    CacheTracker(const CacheTracker&) = delete;
    CacheTracker& operator=(const CacheTracker&) = delete;

    void on_change(ChangeFn fn, void* ctx) noexcept {
        change_fn_ = fn;
        change_ctx_ = ctx;
    }
    // Starts the invalidation connection. The owner forwards the data connection's state
    // changes to on_data_state().
    void start() noexcept;
    // Stops the invalidation connection and the retry timer; the cache is disabled.
    void stop() noexcept;
    void on_data_state(RedisClient::State s) noexcept;

    [[nodiscard]] State state() const noexcept { return state_; }
    [[nodiscard]] RedisClient& invalidation_client() noexcept { return inval_; }

private:
    static void on_inval_state(void* ctx, RedisClient::State s) noexcept;
    static void on_message(void* ctx, const redisReply* message) noexcept;
    static void on_tracking_reply(void* ctx, RedisError err, const redisReply* reply) noexcept;
    void reconsider(std::string_view why) noexcept;
    void go_off(std::string_view why) noexcept;
    void set_state(State s, std::string_view why) noexcept;

    uv_loop_t* loop_;
    RedisClient& data_;
    CachingStore& cache_;
    RedisClient inval_;
    uv_timer_t retry_{};
    bool retry_open_ = false;
    bool stopped_ = false;
    State state_ = State::Off;
    // CLIENT TRACKING commands sent and answered: only the answer to the latest one counts
    // (replies on one connection come in order).
    uint64_t tracking_sent_ = 0;
    uint64_t tracking_answered_ = 0;
    ChangeFn change_fn_ = nullptr;
    void* change_ctx_ = nullptr;
};

[[nodiscard]] std::string_view tracker_state_text(CacheTracker::State s) noexcept;

}  // namespace sipr::location
