#include "sipr/location/redis_sentinel.h"

#include <charconv>

namespace sipr::location {

namespace {

RedisUrl sentinel_url(const RedisEndpoint& e) {
    RedisUrl u;
    u.host = e.host;
    u.port = e.port;
    return u;
}

// [host, port] of a GET-MASTER-ADDR-BY-NAME answer; false for nil (an unknown name) or garbage.
bool parse_primary(const redisReply* r, RedisEndpoint& out) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 2) return false;
    const redisReply* h = r->element[0];
    const redisReply* p = r->element[1];
    if (h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING || h->len == 0) return false;
    unsigned port = 0;
    auto [end, ec] = std::from_chars(p->str, p->str + p->len, port);
    if (ec != std::errc() || end != p->str + p->len || port == 0 || port > 65535) return false;
    out.host.assign(h->str, h->len);
    out.port = static_cast<uint16_t>(port);
    return true;
}

}  // namespace

SentinelWatcher::SentinelWatcher(uv_loop_t* loop, const RedisTarget& target, RedisOptions opts,
                                 SentinelOptions sopts)
    : loop_(loop),
      target_(target),
      sopts_(sopts),
      sentinel_(loop, sentinel_url(target.seeds.at(0)), std::move(opts)) {
    sentinel_.on_state(&SentinelWatcher::on_state, this);
}

SentinelWatcher::~SentinelWatcher() = default;

void SentinelWatcher::follow(RedisClient& client) {
    followers_.push_back(&client);
}

void SentinelWatcher::start() noexcept {
    if (started_) return;
    started_ = true;
    uv_timer_init(loop_, &timer_);
    timer_.data = this;
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<SentinelWatcher*>(t->data)->poll(); },
        sopts_.poll_ms, sopts_.poll_ms);
    sentinel_.start();
}

void SentinelWatcher::stop() noexcept {
    if (stopped_) return;
    stopped_ = true;
    if (started_) uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    sentinel_.stop();
    followers_.clear();
}

void SentinelWatcher::on_state(void* ctx, RedisClient::State s) noexcept {
    auto* self = static_cast<SentinelWatcher*>(ctx);
    if (self->stopped_) return;
    if (s == RedisClient::State::Ready) {
        self->poll();  // a fresh Sentinel: ask at once
    } else if (s == RedisClient::State::Backoff && self->target_.seeds.size() > 1) {
        // This Sentinel is gone: try the next.
        self->current_ = (self->current_ + 1) % self->target_.seeds.size();
        const RedisEndpoint& next = self->target_.seeds[self->current_];
        self->sentinel_.retarget(next.host, next.port);
    }
}

void SentinelWatcher::poll() noexcept {
    if (stopped_ || asking_ || !sentinel_.ready()) return;
    const char* argv[3] = {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", target_.master_name.c_str()};
    std::size_t lens[3] = {8, 23, target_.master_name.size()};
    if (sentinel_.command(3, argv, lens, &SentinelWatcher::on_reply, this) == RedisError::None)
        asking_ = true;
}

void SentinelWatcher::on_reply(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* self = static_cast<SentinelWatcher*>(ctx);
    self->asking_ = false;
    if (self->stopped_ || err != RedisError::None) return;
    RedisEndpoint now;
    if (!parse_primary(reply, now)) return;  // this Sentinel does not know it: keep the last
    if (now == self->primary_) return;
    if (!self->primary_.host.empty()) ++self->switches_;
    self->primary_ = now;
    for (RedisClient* c : self->followers_) c->retarget(now.host, now.port);
}

std::string resolve_sentinel_primary(const RedisTarget& target, uint32_t timeout_ms,
                                     RedisEndpoint& out) {
    timeval tv{static_cast<time_t>(timeout_ms / 1000),
               static_cast<suseconds_t>(timeout_ms % 1000 * 1000)};
    std::string why;
    for (const RedisEndpoint& s : target.seeds) {
        const std::string where = s.host + ":" + std::to_string(s.port);
        redisContext* c = redisConnectWithTimeout(s.host.c_str(), s.port, tv);
        if (c == nullptr || c->err != 0) {
            why += (why.empty() ? "" : "; ") + where + ": " +
                   (c != nullptr ? c->errstr : "out of memory");
            if (c != nullptr) redisFree(c);
            continue;
        }
        redisSetTimeout(c, tv);
        const char* argv[3] = {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", target.master_name.c_str()};
        std::size_t lens[3] = {8, 23, target.master_name.size()};
        auto* r = static_cast<redisReply*>(redisCommandArgv(c, 3, argv, lens));
        bool ok = r != nullptr && parse_primary(r, out);
        if (!ok) {
            std::string said = r == nullptr                   ? std::string(c->errstr)
                               : r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len)
                               : r->type == REDIS_REPLY_NIL
                                   ? "does not monitor a primary named '" + target.master_name + "'"
                                   : std::string("gave an answer that is not host and port");
            if (!why.empty()) why += "; ";
            why += where;
            why += ": ";
            why += said;
        }
        if (r != nullptr) freeReplyObject(r);
        redisFree(c);
        if (ok) return {};
    }
    return "no Sentinel named the primary '" + target.master_name + "' (" + why +
           "): start the Sentinels or fix the sentinel:// URL in --redis / SIPR_REDIS";
}

}  // namespace sipr::location
