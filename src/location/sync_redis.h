#pragma once
// A blocking Redis connection for start-up checks and the admin tools (never on a loop): connect
// with a timeout, AUTH, SELECT, then one command at a time.
#include <hiredis/hiredis.h>
#include <poll.h>

#include <cerrno>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/location/redis_client.h"

namespace sipr::location {

// One reply, freed with the object.
class SyncReply {
  public:
    SyncReply() = default;
    explicit SyncReply(redisReply* r) noexcept : r_(r) {}
    SyncReply(SyncReply&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
    SyncReply& operator=(SyncReply&& o) noexcept {
        std::swap(r_, o.r_);
        return *this;
    }
    ~SyncReply() {
        if (r_ != nullptr) freeReplyObject(r_);
    }
    [[nodiscard]] redisReply* get() const noexcept { return r_; }
    redisReply* operator->() const noexcept { return r_; }
    // A reply that is not an error reply.
    [[nodiscard]] bool ok() const noexcept {
        return r_ != nullptr && r_->type != REDIS_REPLY_ERROR;
    }
    // The error reply's text, else the connection's error (no reply at all).
    [[nodiscard]] std::string error(const class SyncRedis& c) const;

  private:
    redisReply* r_ = nullptr;
};

class SyncRedis {
  public:
    enum class Opened : uint8_t { Ok, Unreachable, AuthRefused, SelectRefused };

    SyncRedis() = default;
    ~SyncRedis() {
        if (c_ != nullptr) redisFree(c_);
    }
    SyncRedis(const SyncRedis&) = delete;
    SyncRedis& operator=(const SyncRedis&) = delete;

    // Connects to the node of `url` (`timeout_ms` for the connection and every command),
    // authenticates and selects its database. Anything but Ok leaves Redis's or the socket's
    // reason in `why` (never the password).
    Opened open(const RedisUrl& url, uint32_t timeout_ms, std::string& why) {
        if (c_ != nullptr) redisFree(c_);
        timeval tv{static_cast<time_t>(timeout_ms / 1000),
                   static_cast<suseconds_t>(timeout_ms % 1000 * 1000)};
        c_ = redisConnectWithTimeout(url.host.c_str(), url.port, tv);
        if (c_ == nullptr || c_->err != 0) {
            why = c_ != nullptr ? c_->errstr : "out of memory";
            return Opened::Unreachable;
        }
        redisSetTimeout(c_, tv);
        if (!url.password.empty()) {
            SyncReply r = url.user.empty() ? run({"AUTH", url.password})
                                           : run({"AUTH", url.user, url.password});
            if (!r.ok()) {
                why = r.error(*this);
                return Opened::AuthRefused;
            }
        }
        if (url.db != 0) {
            SyncReply r = run({"SELECT", std::to_string(url.db)});
            if (!r.ok()) {
                why = r.error(*this);
                return Opened::SelectRefused;
            }
        }
        return Opened::Ok;
    }

    // Sends one command and waits for its reply (null reply: the connection failed, errstr()).
    SyncReply run(std::initializer_list<std::string_view> args) {
        return run(args.begin(), args.size());
    }
    SyncReply run(const std::string_view* args, std::size_t n) {
        Argv a(args, n);
        return SyncReply(static_cast<redisReply*>(
            redisCommandArgv(c_, static_cast<int>(n), a.argv.data(), a.lens.data())));
    }
    // Queues one command without waiting (pipelining); false when the connection failed.
    bool append(const std::string_view* args, std::size_t n) {
        Argv a(args, n);
        return redisAppendCommandArgv(c_, static_cast<int>(n), a.argv.data(), a.lens.data()) ==
               REDIS_OK;
    }
    // The reply to the oldest appended command (null: the connection failed).
    SyncReply next_reply() {
        void* r = nullptr;
        if (redisGetReply(c_, &r) != REDIS_OK) return SyncReply();
        return SyncReply(static_cast<redisReply*>(r));
    }
    // A pushed reply (Pub/Sub message) already parsed or arriving within `wait_ms`; a null reply
    // with `timed_out` set when none came, else the connection failed (errstr()).
    SyncReply next_push(uint32_t wait_ms, bool& timed_out) {
        timed_out = false;
        void* r = nullptr;
        if (redisReaderGetReply(c_->reader, &r) == REDIS_OK && r != nullptr)
            return SyncReply(static_cast<redisReply*>(r));
        pollfd p{c_->fd, POLLIN, 0};
        const int n = ::poll(&p, 1, static_cast<int>(wait_ms));
        if (n == 0 || (n < 0 && errno == EINTR)) {
            timed_out = true;
            return SyncReply();
        }
        return next_reply();
    }
    [[nodiscard]] std::string errstr() const {
        return c_ != nullptr ? c_->errstr : "not connected";
    }

  private:
    // hiredis's argv form of a command given as views.
    struct Argv {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        Argv(const std::string_view* args, std::size_t n) {
            argv.reserve(n);
            lens.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                argv.push_back(args[i].data());
                lens.push_back(args[i].size());
            }
        }
    };

    redisContext* c_ = nullptr;
};

inline std::string SyncReply::error(const SyncRedis& c) const {
    if (r_ == nullptr) return c.errstr();
    if (r_->type == REDIS_REPLY_ERROR) return std::string(r_->str, r_->len);
    return {};
}

}  // namespace sipr::location
