#pragma once
// Follows a Redis Sentinel failover on one uv_loop (DESIGN §7).
//
// The watcher keeps one connection to one Sentinel (the next one in the list whenever it is
// lost) and asks it SENTINEL GET-MASTER-ADDR-BY-NAME every poll_ms. When the answer differs
// from where the followed clients point, each is retargeted (RedisClient::retarget): it drops
// its connection and connects to the new primary. The followed clients require a primary in
// their handshake (RedisOptions::require_primary), so one that reconnects to the old primary
// before the watcher has heard of the failover (Sentinel kills the old primary's client
// connections as it turns it into a replica) is refused there and backs off until retargeted.
// Between the failover and the next poll, commands fail (the caller answers 503).
#include <uv.h>

#include <string>
#include <vector>

#include "sipr/location/redis_client.h"

namespace sipr::location {

struct SentinelOptions {
    uint32_t poll_ms = 200;
};

class SentinelWatcher {
  public:
    // `target` (RedisMode::Sentinel) gives the Sentinels and the primary's name; `opts`
    // configure the connection to a Sentinel (its password is not the data nodes').
    SentinelWatcher(uv_loop_t* loop, const RedisTarget& target, RedisOptions opts,
                    SentinelOptions sopts = {});
    ~SentinelWatcher();
    SentinelWatcher(const SentinelWatcher&) = delete;
    SentinelWatcher& operator=(const SentinelWatcher&) = delete;

    // Retargets `client` (not owned; must outlive this or be unfollowed by stop()) on every change.
    void follow(RedisClient& client);
    void start() noexcept;
    void stop() noexcept;

    // The primary the Sentinels named last (empty host before the first answer).
    [[nodiscard]] const RedisEndpoint& primary() const noexcept { return primary_; }
    [[nodiscard]] uint64_t switches() const noexcept { return switches_; }

  private:
    static void on_state(void* ctx, RedisClient::State s) noexcept;
    static void on_reply(void* ctx, RedisError err, const redisReply* reply) noexcept;
    void poll() noexcept;

    uv_loop_t* loop_;
    RedisTarget target_;
    SentinelOptions sopts_;
    RedisClient sentinel_;
    std::size_t current_ = 0;  // index into target_.seeds
    std::vector<RedisClient*> followers_;
    RedisEndpoint primary_;
    uv_timer_t timer_{};
    bool started_ = false;
    bool stopped_ = false;
    bool asking_ = false;
    uint64_t switches_ = 0;
};

// Asks the Sentinels of `target`, one after the other, for the primary (start-up and sip-locctl,
// blocking). Returns "" and sets `out`, or a sentence saying what is wrong and what to do.
[[nodiscard]] std::string resolve_sentinel_primary(const RedisTarget& target, uint32_t timeout_ms,
                                                   RedisEndpoint& out);

}  // namespace sipr::location
