#include "sipr/location/cache_tracker.h"

#include <charconv>

namespace sipr::location {

namespace {
constexpr uint64_t kRetryMs = 1000;  // after CLIENT TRACKING was refused or could not be sent
}

std::string_view tracker_state_text(CacheTracker::State s) noexcept {
    switch (s) {
        case CacheTracker::State::Off: return "off";
        case CacheTracker::State::Enabling: return "enabling";
        case CacheTracker::State::On: return "on";
    }
    return "?";
}

CacheTracker::CacheTracker(uv_loop_t* loop, RedisClient& data, CachingStore& cache,
                           const RedisUrl& url, RedisOptions inval_opts)
    : loop_(loop), data_(data), cache_(cache), inval_(loop, url, [&] {
          inval_opts.fetch_client_id = true;
          inval_opts.max_pending = 4;  // the handshake only: a subscriber takes no commands
          return inval_opts;
      }()) {
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
    if (cache_.enabled() || state_ != State::Off) cache_.set_enabled(false);
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
    char id[24];
    auto [end, ec] = std::to_chars(id, id + sizeof id, inval_.client_id());
    const char* argv[5] = {"CLIENT", "TRACKING", "ON", "REDIRECT", id};
    std::size_t lens[5] = {6, 8, 2, 8, static_cast<std::size_t>(end - id)};
    if (data_.command(5, argv, lens, &CacheTracker::on_tracking_reply, this) != RedisError::None) {
        if (retry_open_)
            uv_timer_start(
                &retry_,
                [](uv_timer_t* t) { static_cast<CacheTracker*>(t->data)->reconsider(""); },
                kRetryMs, 0);
        return;
    }
    ++tracking_sent_;
    set_state(State::Enabling, "");
}

void CacheTracker::on_tracking_reply(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* self = static_cast<CacheTracker*>(ctx);
    ++self->tracking_answered_;
    if (self->tracking_answered_ != self->tracking_sent_ || self->state_ != State::Enabling)
        return;  // an older attempt's answer, or the pair broke since
    bool ok = err == RedisError::None && reply != nullptr && reply->type == REDIS_REPLY_STATUS;
    if (ok && self->data_.ready() && self->inval_.ready()) {
        self->cache_.set_enabled(true);
        self->set_state(State::On, "");
        return;
    }
    std::string_view why = "CLIENT TRACKING failed";
    if (reply != nullptr && reply->type == REDIS_REPLY_ERROR) why = std::string_view(reply->str, reply->len);
    else if (err == RedisError::Timeout) why = "CLIENT TRACKING timed out";
    self->go_off(why);
    if (self->retry_open_)
        uv_timer_start(
            &self->retry_,
            [](uv_timer_t* t) { static_cast<CacheTracker*>(t->data)->reconsider(""); }, kRetryMs,
            0);
}

void CacheTracker::on_message(void* ctx, const redisReply* message) noexcept {
    auto* self = static_cast<CacheTracker*>(ctx);
    const redisReply* payload = message->element[2];
    if (payload->type == REDIS_REPLY_ARRAY) {
        for (std::size_t i = 0; i < payload->elements; ++i) {
            const redisReply* k = payload->element[i];
            if (k->type == REDIS_REPLY_STRING) self->cache_.on_invalidated(std::string_view(k->str, k->len));
        }
    } else if (payload->type == REDIS_REPLY_NIL) {
        self->cache_.on_flush_all();  // FLUSHALL / FLUSHDB
    } else if (payload->type == REDIS_REPLY_STRING) {
        self->cache_.on_invalidated(std::string_view(payload->str, payload->len));
    }
}

}  // namespace sipr::location
