#include "sipr/location/housekeeper.h"

#include <hiredis/hiredis.h>

#include <charconv>
#include <string>
#include <string_view>

#include "sipr/location/redis_store.h"
#include "sipr/location/schema.h"

namespace sipr::location {

namespace {

bool to_ll(const redisReply* v, long long& out) noexcept {
    if (v == nullptr || v->type != REDIS_REPLY_STRING) return false;
    auto r = std::from_chars(v->str, v->str + v->len, out);
    return r.ec == std::errc{};
}

}  // namespace

Housekeeper::Housekeeper(uv_loop_t* loop, RedisRoute& route, RegisterStore& store,
                         StoreStats& stats, Options opts) noexcept
    : loop_(loop), route_(route), store_(store), stats_(stats), opts_(opts) {}

void Housekeeper::start() noexcept {
    if (open_) return;
    uv_timer_init(loop_, &timer_);
    timer_.data = this;
    open_ = true;
    // The first tick soon after start, so the counts are on /metrics once Redis is ready.
    uv_timer_start(&timer_, &Housekeeper::on_tick, 100, opts_.tick_ms);
}

void Housekeeper::stop() noexcept {
    if (!open_) return;
    open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void Housekeeper::on_tick(uv_timer_t* t) noexcept {
    auto* self = static_cast<Housekeeper*>(t->data);
    if (!self->route_.ready()) return;
    self->sweep();
    if (self->ticks_++ % self->opts_.counts_every == 0) self->read_counts();
}

void Housekeeper::sweep() noexcept {
    if (sweeping_) return;
    // sipr:expiry scores an AOR expiry_ms * 1024 + n: every AOR with a binding past its expiry
    // scores at most now * 1024 + 1023. The local clock only decides when to look; register.lua
    // prunes by Redis TIME.
    char max[32];
    auto r = std::to_chars(max, max + sizeof max, system_clock_ms() * 1024 + 1023);
    char limit[16];
    auto l = std::to_chars(limit, limit + sizeof limit, opts_.batch);
    const char* argv[] = {"ZRANGEBYSCORE", kExpiryKey.data(), "-inf", max, "LIMIT", "0", limit};
    const std::size_t lens[] = {13,
                                kExpiryKey.size(),
                                4,
                                static_cast<std::size_t>(r.ptr - max),
                                5,
                                1,
                                static_cast<std::size_t>(l.ptr - limit)};
    if (route_.command(kExpiryKey, false, 7, argv, lens, &Housekeeper::on_due, this) ==
        RedisError::None)
        sweeping_ = true;
}

void Housekeeper::on_due(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* self = static_cast<Housekeeper*>(ctx);
    if (err != RedisError::None || reply->type != REDIS_REPLY_ARRAY || !self->open_) {
        self->sweeping_ = false;
        return;
    }
    RegisterChanges ch;
    ch.sweep = true;
    for (std::size_t i = 0; i < reply->elements; ++i) {
        const redisReply* v = reply->element[i];
        if (v->type != REDIS_REPLY_STRING) continue;
        ch.aor.assign(v->str, v->len);
        if (self->store_.apply_register(ch, &Housekeeper::on_pruned, self) == StoreError::None)
            ++self->pruning_;
    }
    self->sweeping_ = self->pruning_ != 0;
}

void Housekeeper::on_pruned(void* ctx, const RegisterReply&) noexcept {
    auto* self = static_cast<Housekeeper*>(ctx);
    if (--self->pruning_ == 0) self->sweeping_ = false;
}

void Housekeeper::read_counts() noexcept {
    if (counting_) return;
    const char* argv[] = {"HMGET", kStatsKey.data(), "aors", "bindings"};
    const std::size_t lens[] = {5, kStatsKey.size(), 4, 8};
    if (route_.command(kStatsKey, false, 4, argv, lens, &Housekeeper::on_counts, this) ==
        RedisError::None)
        counting_ = true;
}

void Housekeeper::on_counts(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* self = static_cast<Housekeeper*>(ctx);
    self->counting_ = false;
    if (err != RedisError::None || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) return;
    long long aors = 0, bindings = 0;
    // Absent fields: nothing registered since the counts began.
    if (reply->element[0]->type != REDIS_REPLY_NIL && !to_ll(reply->element[0], aors)) return;
    if (reply->element[1]->type != REDIS_REPLY_NIL && !to_ll(reply->element[1], bindings)) return;
    self->stats_.registered_aors.set(aors);
    self->stats_.registered_bindings.set(bindings);
    self->stats_.registered_known.set(1);
}

}  // namespace sipr::location
