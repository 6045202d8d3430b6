#pragma once
// Where RedisStore's commands go (DESIGN §7): one node, one node plus a replica for look-ups
// (--redis-read), or a Redis Cluster (redis_cluster.h). A Sentinel-followed primary is one node
// whose RedisClient is retargeted (redis_sentinel.h), so it is a SingleRoute too.
//
// Same contract as RedisClient::command(): a command refused at the call returns the reason and
// never calls back; otherwise the callback runs exactly once.
#include <string_view>

#include "sipr/location/redis_client.h"

namespace sipr::location {

class RedisRoute {
  public:
    virtual ~RedisRoute() = default;
    // `key` is the command's key (the first, when it has more; they share one hash slot, DESIGN
    // §6). `read`: a look-up that a replica may answer.
    [[nodiscard]] virtual RedisError command(std::string_view key, bool read, int argc,
                                             const char* const* argv, const std::size_t* lens,
                                             RedisClient::ReplyFn fn, void* ctx) noexcept = 0;
    // Whether writes can be sent (the registrar's health).
    [[nodiscard]] virtual bool ready() const noexcept = 0;
    // Whether look-ups can be sent (the redirect server's health).
    [[nodiscard]] virtual bool read_ready() const noexcept { return ready(); }
};

// One primary, and optionally a replica that answers look-ups while it is Ready (else they go to
// the primary). Neither client is owned.
class SingleRoute final : public RedisRoute {
  public:
    explicit SingleRoute(RedisClient& primary, RedisClient* replica = nullptr) noexcept
        : primary_(primary), replica_(replica) {}

    [[nodiscard]] RedisError command(std::string_view, bool read, int argc, const char* const* argv,
                                     const std::size_t* lens, RedisClient::ReplyFn fn,
                                     void* ctx) noexcept override {
        RedisClient& c = read && replica_ != nullptr && replica_->ready() ? *replica_ : primary_;
        return c.command(argc, argv, lens, fn, ctx);
    }
    [[nodiscard]] bool ready() const noexcept override { return primary_.ready(); }
    [[nodiscard]] bool read_ready() const noexcept override {
        return primary_.ready() || (replica_ != nullptr && replica_->ready());
    }

  private:
    RedisClient& primary_;
    RedisClient* replica_;
};

}  // namespace sipr::location
