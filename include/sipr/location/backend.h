#pragma once
// The location data of one worker (DESIGN §3, §6, §7): built from the Redis options, it owns the
// connections, the route (one node with an optional replica for reads, Sentinel-followed, or a
// Redis Cluster), the Sentinel watcher, and the near-cache with its invalidation tracker. A
// service sees only the narrow store interfaces; the daemon sees a typed health state and the
// notices it logs. Lives on one loop thread, from start() until the loop ran stop()'s closes.
//
// Also here: the blocking start-up checks (resolve_redis_setup, bound_tracking_table), which run
// on the main thread before any loop exists.
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sipr/location/auth_store.h"
#include "sipr/location/cache_tracker.h"
#include "sipr/location/caching_store.h"
#include "sipr/location/housekeeper.h"
#include "sipr/location/near_cache.h"
#include "sipr/location/redis_client.h"
#include "sipr/location/redis_cluster.h"
#include "sipr/location/redis_sentinel.h"
#include "sipr/location/redis_store.h"
#include "sipr/location/stats.h"
#include "sipr/location/store.h"

namespace sipr::location {

// Where a daemon's data lives, as checked at start-up.
struct RedisSetup {
    RedisTarget target;  // what --redis said
    // The node to connect to: the one of redis://, the primary the Sentinels named at start-up,
    // or a Cluster's first seed.
    RedisUrl primary;
    bool has_read = false;  // --redis-read given
    RedisUrl read;
};

// Whether the node look-ups go to (--redis-read's replica, else the primary or a Cluster's first
// seed) is on this machine: its host is a loopback address or "localhost". Redis then competes
// with the workers for the same cores.
[[nodiscard]] bool redis_is_local(const RedisSetup& setup) noexcept;

// Gives `url` (parsed from `url_text`) the password `password` (from a password file): it
// supplies or overrides the URL's, and "redis://name@host" then names the ACL user.
void apply_password(std::string_view url_text, std::string password, RedisUrl& url);

// Resolves and checks --redis (`redis`) and --redis-read (`redis_read`, "" when not given):
// parses them, applies `password` when not null, asks the Sentinels for the primary, and checks
// that Redis answers (for a Cluster: that one seed does and serves slots). Blocking (start-up
// only). Returns "" and fills `out`, or one line saying what is wrong and what to do.
[[nodiscard]] std::string resolve_redis_setup(const std::string& redis,
                                              const std::string& redis_read,
                                              const std::string* password, uint32_t timeout_ms,
                                              RedisSetup& out);

// Connects to the node of `url` synchronously, authenticates, selects the database and PINGs.
// Returns "" on success, else a sentence saying what is wrong and what to do.
[[nodiscard]] std::string check_redis(const RedisUrl& url, uint32_t timeout_ms);

// Makes the node of `url` bound its client-side-caching tracking table to `max_keys` (>= 1): reads
// tracking-table-max-keys and, when it is 0 (unbounded) or above, sets it (CONFIG SET; in that
// node's memory only, so each CacheTracker checks again on every reconnect). Blocking. Returns ""
// (and in `note` what it changed, if anything) or one line saying why not and what to do.
[[nodiscard]] std::string bound_tracking_table(const RedisUrl& url, uint64_t max_keys,
                                               uint32_t timeout_ms, std::string& note);

// Whether look-ups can be served.
enum class Health : uint8_t {
    Up,              // every connection Ready
    ReadsOnPrimary,  // the --redis-read replica is not Ready: look-ups go to the primary
    Down,            // no connection that can answer a look-up
};

// Which connection a notice is about.
enum class RedisLink : uint8_t {
    Data,     // the only data connection (redis://, sentinel:// without --redis-read, cluster://)
    Primary,  // the primary, when look-ups go to a --redis-read replica
    Replica,  // the --redis-read replica
};

// What happened, for the daemon's log.
enum class BackendEvent : uint8_t {
    Ready,         // `link` is Ready
    Unreachable,   // `link` failed (`detail`: why); it retries with back-off
    PrimaryMoved,  // the Sentinels named a new primary (`detail`: its redacted URL); reconnecting
    CacheOn,       // the near-cache is on (Redis tracks the keys it reads)
    CacheOff,      // the near-cache is off and flushed (`detail`: why)
};
struct BackendNotice {
    BackendEvent event;
    RedisLink link;
    std::string_view detail;  // valid only during the call
};
using BackendNoticeFn = void (*)(void* ctx, const BackendNotice& notice) noexcept;

struct BackendOptions {
    RedisOptions redis;  // timeouts and pending bound of the data connections
    // ttl_ms > 0: look-ups go through a near-cache kept correct by a second connection (CLIENT
    // TRACKING); the connections are then named sipr-data-<index> and sipr-inval-<index> (with a
    // Cluster, one invalidation connection per node: sipr-inval-<index>-<node>).
    NearCacheOptions cache;
    std::size_t index = 0;  // the worker's number, in connection names
    // The registrar: worker 0 runs the Housekeeper (expiry sweep, registration counts) where
    // register.lua keeps them (not on a Redis Cluster).
    bool housekeeping = false;
    // Registration events and counts (register.lua); false: sip-registrard --events off.
    bool events = true;
};

class Backend {
  public:
    // `stats` (the worker's shard) gets redis_up, the Cluster redirects and the cache counters.
    Backend(uv_loop_t* loop, const RedisSetup& setup, const BackendOptions& opts,
            StoreStats& stats);
    ~Backend();
    Backend(const Backend&) = delete;
    Backend& operator=(const Backend&) = delete;

    // Called on every notice (set before start()).
    void on_notice(BackendNoticeFn fn, void* ctx) noexcept {
        notice_fn_ = fn;
        notice_ctx_ = ctx;
    }
    // Starts every connection.
    void start() noexcept;
    // Stops every connection; the object may be destroyed once the loop ran the closes.
    void stop() noexcept;

    // Where look-ups go: the near-cache when on, else Redis.
    [[nodiscard]] LookupStore& lookups() noexcept;
    [[nodiscard]] RegisterStore& registrations() noexcept;
    [[nodiscard]] AuthStore& auth() noexcept;
    [[nodiscard]] Health health() const noexcept;

  private:
    static void on_data_state(void* ctx, RedisClient::State s) noexcept;
    static void on_read_state(void* ctx, RedisClient::State s) noexcept;
    static void on_cache_change(void* ctx, CacheTracker::State s, std::string_view why) noexcept;
    void state_changed(RedisLink link, RedisClient::State s, const std::string& why) noexcept;
    void notify(BackendEvent e, RedisLink link, std::string_view detail) noexcept;

    StoreStats& stats_;
    std::unique_ptr<RedisClient> primary_;  // redis://, sentinel://
    std::unique_ptr<RedisClient> read_;     // --redis-read
    std::unique_ptr<SentinelWatcher> sentinel_;
    std::unique_ptr<RedisCluster> cluster_;  // cluster://
    std::unique_ptr<SingleRoute> route_;     // redis:// and sentinel://
    std::unique_ptr<RedisStore> store_;
    std::unique_ptr<CachingStore> cache_;  // with the near-cache only
    std::unique_ptr<CacheTracker> tracker_;
    std::unique_ptr<ClusterCacheTracker> cluster_tracker_;  // cluster:// with the cache
    std::unique_ptr<Housekeeper> housekeeper_;              // the registrar's worker 0
    uint64_t switches_seen_ = 0;                            // Sentinel switches already reported
    BackendNoticeFn notice_fn_ = nullptr;
    void* notice_ctx_ = nullptr;
};

}  // namespace sipr::location
