#pragma once
// Keeps one worker's near-cache correct with Redis client-side caching (DESIGN §7; Redis >= 6,
// RESP2 with redirection, as hiredis 0.14 has no RESP3):
//
// - a second connection, the invalidation connection, is named (CLIENT SETNAME), learns its
//   CLIENT ID and SUBSCRIBEs to __redis__:invalidate, again on every reconnect;
// - when it and the worker's data connection are both Ready, the data connection first makes
//   sure Redis bounds its tracking table (CONFIG GET tracking-table-max-keys; CONFIG SET to
//   `max_keys` when the node's value is 0, unbounded, or above it; Off, retried, when that is
//   refused), then sends CLIENT TRACKING ON REDIRECT <id>: Redis then remembers every key the
//   data connection reads and publishes the key's name to the invalidation connection when it
//   changes (a null message for FLUSHALL / FLUSHDB), or when it drops the key from its full
//   table (so the bound costs hits, never correctness). The check runs on every (re)connection
//   because CONFIG SET lives in the node's memory only: a restarted Redis, a promoted replica or
//   a --redis-read replica has its own value;
// - the cache is enabled only once Redis confirmed tracking, and flushed and disabled the moment
//   either connection leaves Ready (a new data connection is not tracked; a new invalidation
//   connection has another id; a restarted Redis forgot everything), until tracking is
//   confirmed again.
//
//   Off --both Ready--> Enabling (CONFIG GET [, CONFIG SET], CLIENT TRACKING) --"+OK"--> On
//    ^                     |  error: retry after a second   |
//    \---------------------+-- either connection not Ready -/   (flush, disable)
#include <uv.h>

#include <string>

#include <memory>
#include <vector>

#include "sipr/location/caching_store.h"
#include "sipr/location/redis_client.h"
#include "sipr/location/redis_cluster.h"

namespace sipr::location {

inline constexpr std::string_view kInvalidationChannel = "__redis__:invalidate";
inline constexpr std::string_view kTrackingMaxKeysConfig = "tracking-table-max-keys";

// What a node's tracking-table-max-keys is, against the bound `max_keys` (>= 1).
enum class TrackingBound : uint8_t {
    Within,      // 1..max_keys: leave it
    Unbounded,   // 0: Redis keeps every key ever read
    Above,       // > max_keys
    Unreadable,  // no such setting (Redis < 6) or a reply not [name, number]
};
// Judges the reply to CONFIG GET tracking-table-max-keys (RESP2: [name, value]); sets `current`
// to the node's value when it could be read.
[[nodiscard]] TrackingBound judge_tracking_bound(const redisReply* reply, uint64_t max_keys,
                                                 uint64_t& current) noexcept;

class CacheTracker {
  public:
    enum class State : uint8_t { Off, Enabling, On };
    // Told of every change of state, with a reason for Off ("" otherwise), for logs.
    using ChangeFn = void (*)(void* ctx, State state, std::string_view why) noexcept;

    // `data` and `cache` are not owned and must outlive this; `inval_opts` configure the
    // invalidation connection (its client_name names it in CLIENT LIST). `max_keys` (>= 1) bounds
    // the node's tracking table as above; 0 skips the check (tests of the tracker alone).
    CacheTracker(uv_loop_t* loop, RedisClient& data, TrackedCache& cache, const RedisUrl& url,
                 RedisOptions inval_opts, uint64_t max_keys);
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
    static void on_config_get_reply(void* ctx, RedisError err, const redisReply* reply) noexcept;
    static void on_config_set_reply(void* ctx, RedisError err, const redisReply* reply) noexcept;
    // Whether `reply` answers the latest command sent while the pair is still usable.
    [[nodiscard]] bool current_reply() noexcept;
    // Sends one command of the enabling sequence; false (and Off, retry armed) if it could not.
    bool send(int argc, const char* const* argv, const std::size_t* lens,
              void (*cb)(void*, RedisError, const redisReply*) noexcept) noexcept;
    void send_tracking() noexcept;
    void fail(std::string_view why, uint64_t retry_ms) noexcept;
    void reconsider(std::string_view why) noexcept;
    void go_off(std::string_view why) noexcept;
    void set_state(State s, std::string_view why) noexcept;

    uv_loop_t* loop_;
    RedisClient& data_;
    TrackedCache& cache_;
    bool tracked_ = false;  // cache_ told tracking is on
    RedisClient inval_;
    uv_timer_t retry_{};
    bool retry_open_ = false;
    bool stopped_ = false;
    State state_ = State::Off;
    uint64_t max_keys_;
    // Commands of the enabling sequence sent and answered: only the answer to the latest one
    // counts (replies on one connection come in order).
    uint64_t sent_ = 0;
    uint64_t answered_ = 0;
    std::string why_;  // a failure's reason, kept for the change callback
    ChangeFn change_fn_ = nullptr;
    void* change_ctx_ = nullptr;
};

[[nodiscard]] std::string_view tracker_state_text(CacheTracker::State s) noexcept;

// The near-cache over a Redis Cluster: one CacheTracker per node, each with its own invalidation
// connection to that node (Redis tracks a key on the node that served the read, and only that
// node can invalidate it), added as the cluster learns nodes from its slot map.
//
// The cache is enabled while every node that matters is tracked (its tracker On): a node matters
// when it serves a slot of the map or its connection is Ready (a command may reach it through
// -ASK). It is flushed and disabled the moment one of them is not (a node lost, a new primary
// promoted or added, a slot moved to a node not yet tracked), until all are again. A slot that
// moves is safe either way: the node it leaves deletes its keys, which invalidates them.
class ClusterCacheTracker final : public ClusterObserver {
  public:
    // `cluster` and `cache` are not owned and must outlive this; `inval_opts` configure every
    // invalidation connection, `max_keys` bounds each node's tracking table (CacheTracker).
    ClusterCacheTracker(uv_loop_t* loop, RedisCluster& cluster, CachingStore& cache,
                        RedisOptions inval_opts, uint64_t max_keys);
    ~ClusterCacheTracker();
    ClusterCacheTracker(const ClusterCacheTracker&) = delete;
    ClusterCacheTracker& operator=(const ClusterCacheTracker&) = delete;

    // As CacheTracker's, for the whole: On while the cache is enabled.
    void on_change(CacheTracker::ChangeFn fn, void* ctx) noexcept {
        change_fn_ = fn;
        change_ctx_ = ctx;
    }
    void start() noexcept;
    void stop() noexcept;
    [[nodiscard]] CacheTracker::State state() const noexcept { return state_; }
    // Trackers made so far (one per node the cluster knows).
    [[nodiscard]] std::size_t trackers() const noexcept { return nodes_.size(); }

    void node_added(uint16_t node, RedisClient& client, const RedisUrl& url) noexcept override;
    void node_state(uint16_t node, RedisClient::State s) noexcept override;
    void map_changed() noexcept override { reconsider(); }

  private:
    // One node's tracker and the gate it drives: invalidations pass through to the cache; the
    // tracked state is this node's only.
    struct Gate final : TrackedCache {
        ClusterCacheTracker* owner = nullptr;
        bool tracked = false;
        std::unique_ptr<CacheTracker> tracker;
        void set_tracked(bool on) noexcept override;
        void on_invalidated(std::string_view key) noexcept override;
        void on_flush_all() noexcept override;
    };
    static void on_node_change(void* ctx, CacheTracker::State s, std::string_view why) noexcept;
    void reconsider() noexcept;

    uv_loop_t* loop_;
    RedisCluster& cluster_;
    CachingStore& cache_;
    RedisOptions inval_opts_;
    uint64_t max_keys_;
    std::vector<std::unique_ptr<Gate>> nodes_;  // by the cluster's node index
    bool started_ = false;
    bool stopped_ = false;
    CacheTracker::State state_ = CacheTracker::State::Off;
    std::string why_;  // the latest node's reason for Off, for the change callback
    CacheTracker::ChangeFn change_fn_ = nullptr;
    void* change_ctx_ = nullptr;
};

}  // namespace sipr::location
