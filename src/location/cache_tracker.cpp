#include "sipr/location/cache_tracker.h"

#include <charconv>

namespace sipr::location {

namespace {
constexpr uint64_t kRetryMs = 1000;  // after CLIENT TRACKING was refused or could not be sent
// After the node refused to bound its tracking table: an operator has to act, so retry (and log)
// less often.
constexpr uint64_t kBoundRetryMs = 10000;
}  // namespace

TrackingBound judge_tracking_bound(const redisReply* reply, uint64_t max_keys,
                                   uint64_t& current) noexcept {
    if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
        return TrackingBound::Unreadable;
    const redisReply* v = reply->element[1];
    if (v == nullptr || v->type != REDIS_REPLY_STRING || v->len == 0)
        return TrackingBound::Unreadable;
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(v->str, v->str + v->len, n);
    if (ec != std::errc() || end != v->str + v->len) return TrackingBound::Unreadable;
    current = n;
    if (n == 0) return TrackingBound::Unbounded;
    return n > max_keys ? TrackingBound::Above : TrackingBound::Within;
}

std::string_view tracker_state_text(CacheTracker::State s) noexcept {
    switch (s) {
        case CacheTracker::State::Off:
            return "off";
        case CacheTracker::State::Enabling:
            return "enabling";
        case CacheTracker::State::On:
            return "on";
    }
    return "?";
}

CacheTracker::CacheTracker(uv_loop_t* loop, RedisClient& data, TrackedCache& cache,
                           const RedisUrl& url, RedisOptions inval_opts, uint64_t max_keys)
    : loop_(loop),
      data_(data),
      cache_(cache),
      inval_(loop, url,
             [&] {
                 inval_opts.fetch_client_id = true;
                 inval_opts.max_pending = 4;  // the handshake only: a subscriber takes no commands
                 return inval_opts;
             }()),
      max_keys_(max_keys) {
    inval_.on_state(&CacheTracker::on_inval_state, this);
    inval_.subscribe(std::string(kInvalidationChannel), &CacheTracker::on_message, this);
}

CacheTracker::~CacheTracker() = default;

void CacheTracker::start() noexcept {
    if (retry_open_ || stopped_) return;
    uv_timer_init(loop_, &retry_);
    retry_.data = this;
    retry_open_ = true;
    inval_.start();
}

void CacheTracker::stop() noexcept {
    if (stopped_) return;
    stopped_ = true;
    inval_.stop();
    if (retry_open_) {
        uv_close(reinterpret_cast<uv_handle_t*>(&retry_), nullptr);
        retry_open_ = false;
    }
    go_off("stopped");
}

void CacheTracker::set_state(State s, std::string_view why) noexcept {
    if (state_ == s) return;
    state_ = s;
    if (change_fn_ != nullptr) change_fn_(change_ctx_, s, why);
}

void CacheTracker::go_off(std::string_view why) noexcept {
    // Flushed at once: from here on no invalidation is sure to reach us.
    if (tracked_ || state_ != State::Off) cache_.set_tracked(false);
    tracked_ = false;
    set_state(State::Off, why);
}

void CacheTracker::on_data_state(RedisClient::State s) noexcept {
    reconsider(s == RedisClient::State::Ready ? "" : "data connection not ready");
}

void CacheTracker::on_inval_state(void* ctx, RedisClient::State s) noexcept {
    auto* self = static_cast<CacheTracker*>(ctx);
    self->reconsider(s == RedisClient::State::Ready ? "" : "invalidation connection not ready");
}

void CacheTracker::reconsider(std::string_view why) noexcept {
    if (stopped_) {
        go_off("stopped");
        return;
    }
    if (!data_.ready() || !inval_.ready() || inval_.client_id() == 0) {
        go_off(why.empty() ? std::string_view("a connection is not ready") : why);
        return;
    }
    if (state_ != State::Off) return;  // tracking asked for, or on, with this pair
    if (max_keys_ == 0) {
        send_tracking();
        return;
    }
    // The bound first: Redis adds one entry to its tracking table per distinct key read, and a
    // flood of look-ups for random AORs would otherwise grow it up to the node's setting (which
    // may be 0, unbounded), taking memory from the bindings.
    const char* argv[3] = {"CONFIG", "GET", kTrackingMaxKeysConfig.data()};
    std::size_t lens[3] = {6, 3, kTrackingMaxKeysConfig.size()};
    if (send(3, argv, lens, &CacheTracker::on_config_get_reply)) set_state(State::Enabling, "");
}

bool CacheTracker::send(int argc, const char* const* argv, const std::size_t* lens,
                        void (*cb)(void*, RedisError, const redisReply*) noexcept) noexcept {
    if (data_.command(argc, argv, lens, cb, this) != RedisError::None) {
        fail("could not send " + std::string(argv[0]) + " " + std::string(argv[1]), kRetryMs);
        return false;
    }
    ++sent_;
    return true;
}

void CacheTracker::fail(std::string_view why, uint64_t retry_ms) noexcept {
    why_.assign(why);
    go_off(why_);
    if (retry_open_)
        uv_timer_start(
            &retry_, [](uv_timer_t* t) { static_cast<CacheTracker*>(t->data)->reconsider(""); },
            retry_ms, 0);
}

bool CacheTracker::current_reply() noexcept {
    ++answered_;
    return answered_ == sent_ && state_ == State::Enabling;  // else an older attempt's answer
}

void CacheTracker::send_tracking() noexcept {
    char id[24];
    auto [end, ec] = std::to_chars(id, id + sizeof id, inval_.client_id());
    const char* argv[5] = {"CLIENT", "TRACKING", "ON", "REDIRECT", id};
    std::size_t lens[5] = {6, 8, 2, 8, static_cast<std::size_t>(end - id)};
    if (send(5, argv, lens, &CacheTracker::on_tracking_reply)) set_state(State::Enabling, "");
}

void CacheTracker::on_config_get_reply(void* ctx, RedisError err,
                                       const redisReply* reply) noexcept {
    auto* self = static_cast<CacheTracker*>(ctx);
    if (!self->current_reply()) return;
    if (err != RedisError::None || reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
        std::string why = "cannot read tracking-table-max-keys (CONFIG GET): ";
        if (reply != nullptr && reply->type == REDIS_REPLY_ERROR)
            why.append(reply->str, reply->len);
        else
            why += err == RedisError::Timeout ? "timed out" : "no answer";
        self->fail(why, kBoundRetryMs);
        return;
    }
    uint64_t current = 0;
    switch (judge_tracking_bound(reply, self->max_keys_, current)) {
        case TrackingBound::Within:
            self->send_tracking();
            return;
        case TrackingBound::Unreadable:
            self->fail("Redis has no tracking-table-max-keys (Redis >= 6 needed)", kBoundRetryMs);
            return;
        case TrackingBound::Unbounded:
        case TrackingBound::Above:
            break;
    }
    char n[24];
    auto [end, ec] = std::to_chars(n, n + sizeof n, self->max_keys_);
    const char* argv[4] = {"CONFIG", "SET", kTrackingMaxKeysConfig.data(), n};
    std::size_t lens[4] = {6, 3, kTrackingMaxKeysConfig.size(), static_cast<std::size_t>(end - n)};
    self->send(4, argv, lens, &CacheTracker::on_config_set_reply);
}

void CacheTracker::on_config_set_reply(void* ctx, RedisError err,
                                       const redisReply* reply) noexcept {
    auto* self = static_cast<CacheTracker*>(ctx);
    if (!self->current_reply()) return;
    if (err == RedisError::None && reply != nullptr && reply->type == REDIS_REPLY_STATUS) {
        self->send_tracking();
        return;
    }
    std::string why =
        "Redis keeps tracking-table-max-keys unbounded or above "
        "--cache-tracking-max-keys and refused CONFIG SET: ";
    if (reply != nullptr && reply->type == REDIS_REPLY_ERROR)
        why.append(reply->str, reply->len);
    else
        why += err == RedisError::Timeout ? "timed out" : "no answer";
    self->fail(why, kBoundRetryMs);
}

void CacheTracker::on_tracking_reply(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* self = static_cast<CacheTracker*>(ctx);
    if (!self->current_reply()) return;
    bool ok = err == RedisError::None && reply != nullptr && reply->type == REDIS_REPLY_STATUS;
    if (ok && self->data_.ready() && self->inval_.ready()) {
        self->tracked_ = true;
        self->cache_.set_tracked(true);
        self->set_state(State::On, "");
        return;
    }
    std::string_view why = "CLIENT TRACKING failed";
    if (reply != nullptr && reply->type == REDIS_REPLY_ERROR)
        why = std::string_view(reply->str, reply->len);
    else if (err == RedisError::Timeout)
        why = "CLIENT TRACKING timed out";
    self->fail(why, kRetryMs);
}

void CacheTracker::on_message(void* ctx, const redisReply* message) noexcept {
    auto* self = static_cast<CacheTracker*>(ctx);
    const redisReply* payload = message->element[2];
    if (payload->type == REDIS_REPLY_ARRAY) {
        for (std::size_t i = 0; i < payload->elements; ++i) {
            const redisReply* k = payload->element[i];
            if (k->type == REDIS_REPLY_STRING)
                self->cache_.on_invalidated(std::string_view(k->str, k->len));
        }
    } else if (payload->type == REDIS_REPLY_NIL) {
        self->cache_.on_flush_all();  // FLUSHALL / FLUSHDB
    } else if (payload->type == REDIS_REPLY_STRING) {
        self->cache_.on_invalidated(std::string_view(payload->str, payload->len));
    }
}

ClusterCacheTracker::ClusterCacheTracker(uv_loop_t* loop, RedisCluster& cluster,
                                         CachingStore& cache, RedisOptions inval_opts,
                                         uint64_t max_keys)
    : loop_(loop),
      cluster_(cluster),
      cache_(cache),
      inval_opts_(std::move(inval_opts)),
      max_keys_(max_keys) {
    cluster_.observe(this);
}

ClusterCacheTracker::~ClusterCacheTracker() {
    cluster_.observe(nullptr);
}

void ClusterCacheTracker::node_added(uint16_t node, RedisClient& client,
                                     const RedisUrl& url) noexcept {
    // Allocation failure terminates (src/README.md): a node is added a few times in a process's
    // life, never per request.
    if (nodes_.size() <= node) nodes_.resize(node + 1u);
    auto g = std::make_unique<Gate>();
    g->owner = this;
    RedisOptions opts = inval_opts_;
    if (!opts.client_name.empty()) opts.client_name.append(1, '-').append(std::to_string(node));
    g->tracker = std::make_unique<CacheTracker>(loop_, client, *g, url, std::move(opts), max_keys_);
    g->tracker->on_change(&ClusterCacheTracker::on_node_change, g.get());
    nodes_[node] = std::move(g);
    if (started_ && !stopped_) nodes_[node]->tracker->start();
    reconsider();
}

void ClusterCacheTracker::node_state(uint16_t node, RedisClient::State s) noexcept {
    if (node < nodes_.size() && nodes_[node]) nodes_[node]->tracker->on_data_state(s);
    reconsider();
}

void ClusterCacheTracker::start() noexcept {
    if (started_) return;
    started_ = true;
    for (auto& g : nodes_)
        if (g) g->tracker->start();
}

void ClusterCacheTracker::stop() noexcept {
    if (stopped_) return;
    stopped_ = true;
    for (auto& g : nodes_)
        if (g) g->tracker->stop();
    reconsider();
}

void ClusterCacheTracker::Gate::set_tracked(bool on) noexcept {
    tracked = on;
    owner->reconsider();
}

void ClusterCacheTracker::Gate::on_invalidated(std::string_view key) noexcept {
    owner->cache_.on_invalidated(key);
}

void ClusterCacheTracker::Gate::on_flush_all() noexcept {
    owner->cache_.on_flush_all();
}

void ClusterCacheTracker::on_node_change(void* ctx, CacheTracker::State s,
                                         std::string_view why) noexcept {
    auto* g = static_cast<Gate*>(ctx);
    if (s == CacheTracker::State::Off && !why.empty()) g->owner->why_.assign(why);
}

void ClusterCacheTracker::reconsider() noexcept {
    bool all = !stopped_ && !nodes_.empty();
    bool any_matters = false;
    for (std::size_t i = 0; all && i < nodes_.size(); ++i) {
        const auto idx = static_cast<uint16_t>(i);
        if (!cluster_.serves_slots(idx) && !cluster_.node_ready(idx)) continue;
        any_matters = true;
        if (!nodes_[i] || !nodes_[i]->tracked) all = false;
    }
    all = all && any_matters;
    if (all == (state_ == CacheTracker::State::On)) return;
    cache_.set_enabled(all);
    state_ = all ? CacheTracker::State::On : CacheTracker::State::Off;
    if (change_fn_ != nullptr)
        change_fn_(change_ctx_, state_,
                   all ? std::string_view()
                       : (why_.empty() ? std::string_view("a node is not tracked yet")
                                       : std::string_view(why_)));
    if (all) why_.clear();
}

}  // namespace sipr::location
