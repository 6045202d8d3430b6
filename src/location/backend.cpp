#include "sipr/location/backend.h"

#include <ctime>

#include <algorithm>

#include "sync_redis.h"

namespace sipr::location {

// ------------------------------------------------------------------------------------------------
// Start-up checks (blocking)

void apply_password(std::string_view url_text, std::string password, RedisUrl& url) {
    // With the password in a file, "redis://name@host" names the ACL user (without a file the
    // single user-info word is the password, as some tools write it).
    if (url.user.empty() && !url.password.empty() &&
        url_text.find("//" + url.password + "@") != std::string_view::npos)
        url.user = url.password;
    url.password = std::move(password);
}

std::string check_redis(const RedisUrl& url, uint32_t timeout_ms) {
    SyncRedis c;
    std::string where = redacted(url);
    std::string err;
    switch (c.open(url, timeout_ms, err)) {
        case SyncRedis::Opened::Ok:
            break;
        case SyncRedis::Opened::Unreachable:
            return "cannot reach Redis at " + where + " (" + err +
                   "): start redis-server or point --redis / SIPR_REDIS at it";
        case SyncRedis::Opened::AuthRefused:
            // The sentence an operator greps for; Redis's own reason (never the password) after.
            return "Redis refused the password (AUTH): check the URL or "
                   "SIPR_REDIS_PASSWORD_FILE (Redis at " +
                   where + " said: " + err + ")";
        case SyncRedis::Opened::SelectRefused:
            return "Redis at " + where + " refused SELECT " + std::to_string(url.db) + " (" + err +
                   ")";
    }
    SyncReply r = c.run({"PING"});
    if (!r.ok())
        return "Redis at " + where + " does not answer PING (" + r.error(c) +
               "): if it needs a password, put it in --redis or in the file named by "
               "SIPR_REDIS_PASSWORD_FILE";
    return {};
}

namespace {

// Whether the node of `url` (checked by check_redis) is in a Redis Cluster that serves slots: ""
// or why not.
std::string check_cluster_node(const RedisUrl& url, uint32_t timeout_ms) {
    SyncRedis c;
    std::string err;
    if (c.open(url, timeout_ms, err) != SyncRedis::Opened::Ok) return "unreachable";
    SyncReply r = c.run({"CLUSTER", "SLOTS"});
    if (!r.ok()) return r.error(c);
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return "it serves no slots (is the cluster created?)";
    return {};
}

}  // namespace

std::string bound_tracking_table(const RedisUrl& url, uint64_t max_keys, uint32_t timeout_ms,
                                 std::string& note) {
    const std::string where = redacted(url);
    SyncRedis c;
    std::string err;
    if (c.open(url, timeout_ms, err) == SyncRedis::Opened::Unreachable)
        return "cannot reach Redis at " + where + " to check tracking-table-max-keys";
    const std::string fix = ": set tracking-table-max-keys to at most " + std::to_string(max_keys) +
                            " in that Redis's configuration (or allow this user CONFIG), or run "
                            "without the near-cache (--cache-ttl 0)";
    uint64_t current = 0;
    TrackingBound b = TrackingBound::Unreadable;
    {
        SyncReply r = c.run({"CONFIG", "GET", kTrackingMaxKeysConfig});
        if (r.get() == nullptr)
            return "CONFIG GET tracking-table-max-keys failed (" + r.error(c) + ")";
        if (r->type == REDIS_REPLY_ERROR)
            return "Redis at " + where + " refused CONFIG GET tracking-table-max-keys (" +
                   r.error(c) + ")" + fix;
        b = judge_tracking_bound(r.get(), max_keys, current);
        if (b == TrackingBound::Unreadable)
            return "Redis at " + where +
                   " has no tracking-table-max-keys: the near-cache needs Redis >= 6";
    }
    if (b == TrackingBound::Within) return {};
    const std::string n = std::to_string(max_keys);
    const std::string was = current == 0 ? std::string("0 (unbounded)") : std::to_string(current);
    SyncReply r = c.run({"CONFIG", "SET", kTrackingMaxKeysConfig, n});
    if (r.get() == nullptr || r->type != REDIS_REPLY_STATUS)
        return "Redis at " + where + " keeps tracking-table-max-keys " + was +
               ", above --cache-tracking-max-keys " + n + ", and refused CONFIG SET (" +
               (r.get() == nullptr || r->type == REDIS_REPLY_ERROR ? r.error(c) : "?") + ")" + fix;
    note = "set tracking-table-max-keys on Redis at " + where + " from " + was + " to " + n;
    return {};
}

std::string resolve_redis_setup(const std::string& redis, const std::string& redis_read,
                                const std::string* password, uint32_t timeout_ms, RedisSetup& out) {
    std::string err;
    if (!parse_redis_target(redis, out.target, err)) return err;
    if (password != nullptr) apply_password(redis, *password, out.target.url);
    out.primary = out.target.url;
    switch (out.target.mode) {
        case RedisMode::Single:
            if (std::string why = check_redis(out.primary, timeout_ms); !why.empty()) return why;
            break;
        case RedisMode::Sentinel: {
            RedisEndpoint p;
            if (std::string why = resolve_sentinel_primary(out.target, timeout_ms, p); !why.empty())
                return why;
            out.primary.host = p.host;
            out.primary.port = p.port;
            if (std::string why = check_redis(out.primary, timeout_ms); !why.empty())
                return "the primary the Sentinels named: " + why;
            break;
        }
        case RedisMode::Cluster: {
            std::string whys;
            bool ok = false;
            for (const RedisEndpoint& seed : out.target.seeds) {
                RedisUrl u = out.target.url;
                u.host = seed.host;
                u.port = seed.port;
                std::string why = check_redis(u, timeout_ms);
                if (why.empty()) why = check_cluster_node(u, timeout_ms);
                if (why.empty()) {
                    ok = true;
                    break;
                }
                whys += (whys.empty() ? "" : "; ") + seed.host + ":" + std::to_string(seed.port) +
                        ": " + why;
            }
            if (!ok)
                return "no node of " + redacted(out.target) + " serves a Redis Cluster (" + whys +
                       "): start the cluster or fix the cluster:// URL in --redis";
            break;
        }
    }
    if (!redis_read.empty()) {
        if (out.target.mode == RedisMode::Cluster)
            return "--redis-read does not apply to a cluster:// --redis (look-ups go to "
                   "the primary of each slot): drop --redis-read";
        if (!parse_redis_url(redis_read, out.read, err)) return "--redis-read: " + err;
        if (password != nullptr) apply_password(redis_read, *password, out.read);
        if (std::string why = check_redis(out.read, timeout_ms); !why.empty())
            return "--redis-read: " + why;
        out.has_read = true;
    }
    return {};
}

// ------------------------------------------------------------------------------------------------
// Backend

namespace {
// The near-cache's TTL clock: coarse (a few ms) is plenty and costs no syscall.
uint64_t coarse_monotonic_ms() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}
}  // namespace

bool redis_is_local(const RedisSetup& setup) noexcept {
    const std::string& host = setup.has_read ? setup.read.host : setup.primary.host;
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

Backend::Backend(uv_loop_t* loop, const RedisSetup& setup, const BackendOptions& opts,
                 StoreStats& stats)
    : stats_(stats) {
    const RedisOptions& ropts = opts.redis;
    const NearCacheOptions& cache = opts.cache;
    const std::string index = std::to_string(opts.index);
    const bool sentinel = setup.target.mode == RedisMode::Sentinel;
    RedisClient* tracked = nullptr;  // redis:// and sentinel://: the connection reads go through
    const RedisUrl* tracked_url = &setup.primary;
    if (setup.target.mode == RedisMode::Cluster) {
        RedisOptions node_opts = ropts;
        if (cache.ttl_ms != 0) node_opts.client_name = "sipr-data-" + index;
        cluster_ = std::make_unique<RedisCluster>(
            loop, setup.target, node_opts, ClusterMetrics{stats.redis_moved, stats.redis_ask});
        cluster_->on_state(&Backend::on_data_state, this);
        store_ = std::make_unique<RedisStore>(*cluster_);
        store_->set_event_delivery(opts.events ? EventDelivery::Channel : EventDelivery::Off);
    } else {
        RedisOptions data_opts = ropts;
        data_opts.require_primary = sentinel;
        if (cache.ttl_ms != 0) data_opts.client_name = "sipr-data-" + index;
        primary_ = std::make_unique<RedisClient>(loop, setup.primary, data_opts);
        primary_->on_state(&Backend::on_data_state, this);
        tracked = primary_.get();
        if (setup.has_read) {
            RedisOptions read_opts = ropts;
            // An unsynced replica (restarted, or cut off from its primary) would answer 404 for
            // users who are registered: it is refused, and reads fall back to the primary.
            read_opts.require_synced = true;
            read_opts.role_check_ms = 1000;
            if (cache.ttl_ms != 0) read_opts.client_name = "sipr-data-" + index;
            read_ = std::make_unique<RedisClient>(loop, setup.read, read_opts);
            read_->on_state(&Backend::on_read_state, this);
            tracked = read_.get();
            tracked_url = &setup.read;
        }
        route_ = std::make_unique<SingleRoute>(*primary_, read_.get());
        store_ = std::make_unique<RedisStore>(*route_);
        if (!opts.events) store_->set_event_delivery(EventDelivery::Off);
        if (opts.housekeeping && opts.events && opts.index == 0)
            housekeeper_ = std::make_unique<Housekeeper>(loop, *route_, *store_, stats,
                                                         Housekeeper::Options{});
        if (sentinel) {
            RedisOptions sopts = ropts;
            sopts.command_timeout_ms = std::max(ropts.command_timeout_ms, ropts.connect_timeout_ms);
            sopts.client_name.clear();
            sentinel_ = std::make_unique<SentinelWatcher>(loop, setup.target, sopts);
            sentinel_->follow(*primary_);
        }
    }
    if (cache.ttl_ms == 0) return;
    CacheMetrics m{stats.cache_hits, stats.cache_misses, stats.cache_invalidations,
                   stats.cache_flushes, stats.cache_entries};
    cache_ =
        std::make_unique<CachingStore>(*store_, cache, m, &system_clock_ms, &coarse_monotonic_ms);
    RedisOptions inval_opts = ropts;
    inval_opts.client_name = "sipr-inval-" + index;
    inval_opts.command_timeout_ms = std::max(ropts.command_timeout_ms, ropts.connect_timeout_ms);
    if (cluster_) {
        // One invalidation connection per node, following the slot map.
        cluster_tracker_ = std::make_unique<ClusterCacheTracker>(
            loop, *cluster_, *cache_, inval_opts, cache.tracking_max_keys);
        cluster_tracker_->on_change(&Backend::on_cache_change, this);
        return;
    }
    inval_opts.require_primary = sentinel && !setup.has_read;
    tracker_ = std::make_unique<CacheTracker>(loop, *tracked, *cache_, *tracked_url, inval_opts,
                                              cache.tracking_max_keys);
    tracker_->on_change(&Backend::on_cache_change, this);
    // The invalidation connection must be on the node the tracked reads go to.
    if (sentinel_ && !setup.has_read) sentinel_->follow(tracker_->invalidation_client());
}

Backend::~Backend() = default;

void Backend::start() noexcept {
    if (housekeeper_) housekeeper_->start();
    if (cluster_) cluster_->start();
    if (primary_) primary_->start();
    if (read_) read_->start();
    if (sentinel_) sentinel_->start();
    if (tracker_) tracker_->start();
    if (cluster_tracker_) cluster_tracker_->start();
}

void Backend::stop() noexcept {
    if (housekeeper_) housekeeper_->stop();
    if (sentinel_) sentinel_->stop();
    if (cluster_) cluster_->stop();
    if (primary_) primary_->stop();
    if (read_) read_->stop();
    if (tracker_) tracker_->stop();
    if (cluster_tracker_) cluster_tracker_->stop();
}

LookupStore& Backend::lookups() noexcept {
    if (cache_) return *cache_;
    return *store_;
}

RegisterStore& Backend::registrations() noexcept {
    return *store_;
}

AuthStore& Backend::auth() noexcept {
    return *store_;
}

Health Backend::health() const noexcept {
    if (!store_->available()) return Health::Down;
    if (read_ && !read_->ready()) return Health::ReadsOnPrimary;
    return Health::Up;
}

void Backend::notify(BackendEvent e, RedisLink link, std::string_view detail) noexcept {
    if (notice_fn_ != nullptr) notice_fn_(notice_ctx_, BackendNotice{e, link, detail});
}

void Backend::on_cache_change(void* ctx, CacheTracker::State s, std::string_view why) noexcept {
    auto* self = static_cast<Backend*>(ctx);
    if (s == CacheTracker::State::On)
        self->notify(BackendEvent::CacheOn, RedisLink::Data, {});
    else if (s == CacheTracker::State::Off)
        self->notify(BackendEvent::CacheOff, RedisLink::Data, why);
}

void Backend::on_data_state(void* ctx, RedisClient::State s) noexcept {
    auto* self = static_cast<Backend*>(ctx);
    if (self->tracker_ && !self->read_) self->tracker_->on_data_state(s);
    self->state_changed(
        self->read_ ? RedisLink::Primary : RedisLink::Data, s,
        self->cluster_ ? self->cluster_->last_error() : self->primary_->last_error());
}

void Backend::on_read_state(void* ctx, RedisClient::State s) noexcept {
    auto* self = static_cast<Backend*>(ctx);
    if (self->tracker_) self->tracker_->on_data_state(s);
    self->state_changed(RedisLink::Replica, s, self->read_->last_error());
}

void Backend::state_changed(RedisLink link, RedisClient::State s, const std::string& why) noexcept {
    stats_.redis_up.set(store_ && store_->available() ? 1 : 0);
    // The watcher counts a switch before it retargets the followed clients, so the primary's
    // Connecting that follows a new switch is the failover's.
    if (s == RedisClient::State::Connecting && sentinel_ && link != RedisLink::Replica &&
        sentinel_->switches() != switches_seen_) {
        switches_seen_ = sentinel_->switches();
        notify(BackendEvent::PrimaryMoved, link, redacted(primary_->url()));
    } else if (s == RedisClient::State::Ready) {
        notify(BackendEvent::Ready, link, {});
    } else if (s == RedisClient::State::Backoff) {
        notify(BackendEvent::Unreachable, link, why);
    }
}

}  // namespace sipr::location
