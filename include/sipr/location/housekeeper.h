#pragma once
// The registrar's periodic Redis chores on one worker's loop (src/location/README.md, "Events" and
// "Counts"): the expiry sweep, which turns bindings that expired in silence into events, and the
// read of the registration counts for /metrics. Never on the request path and never blocking: each
// chore is one asynchronous command (plus one register.lua per AOR swept), at most one of each in
// flight. Only where register.lua keeps the expiry index and the counts (EventDelivery::Stream:
// one node or a Sentinel-followed primary), never on a Redis Cluster.
#include <uv.h>

#include <cstdint>

#include "sipr/location/redis_route.h"
#include "sipr/location/stats.h"
#include "sipr/location/store.h"

namespace sipr::location {

class Housekeeper {
  public:
    struct Options {
        uint32_t tick_ms = 1000;    // the sweep runs every tick
        uint32_t counts_every = 1;  // ticks between reads of the counts
        uint32_t batch = 1000;      // AORs swept per tick at most
    };
    // `route` (writes) and `store` are not owned and must outlive the object; `stats` gets
    // registered_aors, registered_bindings and registered_known.
    Housekeeper(uv_loop_t* loop, RedisRoute& route, RegisterStore& store, StoreStats& stats,
                Options opts) noexcept;
    Housekeeper(const Housekeeper&) = delete;
    Housekeeper& operator=(const Housekeeper&) = delete;

    void start() noexcept;
    // Stops the timer; the object may be destroyed once the loop ran its close and every command
    // in flight was answered (the route's clients stopped: they answer Disconnected).
    void stop() noexcept;

  private:
    static void on_tick(uv_timer_t* t) noexcept;
    static void on_due(void* ctx, RedisError err, const redisReply* reply) noexcept;
    static void on_pruned(void* ctx, const RegisterReply& reply) noexcept;
    static void on_counts(void* ctx, RedisError err, const redisReply* reply) noexcept;
    void sweep() noexcept;
    void read_counts() noexcept;

    uv_loop_t* loop_;
    RedisRoute& route_;
    RegisterStore& store_;
    StoreStats& stats_;
    Options opts_;
    uv_timer_t timer_{};
    bool open_ = false;
    bool sweeping_ = false;  // a ZRANGEBYSCORE or its prunes are in flight
    uint32_t pruning_ = 0;   // prunes in flight
    bool counting_ = false;  // an HMGET is in flight
    uint32_t ticks_ = 0;
};

}  // namespace sipr::location
