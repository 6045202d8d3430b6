#pragma once
// An asynchronous Redis connection on one uv_loop (hiredis 0.14 + its libuv adapter), with the
// explicit states, timeouts and fixed error kinds of STYLE.md (after h2o's Redis client).
//
//   Idle -> Connecting -> Handshake (AUTH, SELECT, CLIENT SETNAME, CLIENT ID, SUBSCRIBE) -> Ready
//                \______________\___________________\-> Backoff -> Connecting ...
//   any -> Stopped (stop())
//
// A client may instead carry one subscription (subscribe()): it is made again in the handshake of
// every connection, Ready means "subscribed", and such a client takes no commands (RESP2: a
// subscribed connection answers nothing but (UN)SUBSCRIBE and PING).
//
// Commands are pipelined: those issued in one turn of the loop leave in one write, made in the
// loop's prepare phase (our own hiredis event glue: no epoll_ctl per command). Each gets its reply
// callback exactly once: with the reply, or with Timeout when none came within the command timeout,
// or with Disconnected when the connection was lost first. A command refused at the call (returned
// error) never calls back.
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sipr::location {

struct RedisUrl {
    std::string host = "127.0.0.1";
    uint16_t port = 6379;
    std::string user;  // ACL user (Redis 6+); empty with a password means AUTH <password>
    std::string password;
    uint32_t db = 0;
};

// Parses redis://[user:password@]host[:port][/db] (also "redis://:password@host"). IPv6 hosts in
// brackets; the password may hold '@', ':' and '/' (the host starts after the last '@'). On failure
// returns false and says why in `error`, which never quotes the password.
[[nodiscard]] bool parse_redis_url(std::string_view url, RedisUrl& out, std::string& error);

// The URL without its password, for logs.
[[nodiscard]] std::string redacted(const RedisUrl& url);

// Where the data lives (DESIGN §7): one node, a primary found through Sentinel, or a Cluster.
enum class RedisMode : uint8_t { Single, Sentinel, Cluster };

struct RedisEndpoint {
    std::string host;
    uint16_t port = 0;
    bool operator==(const RedisEndpoint&) const = default;
};

struct RedisTarget {
    RedisMode mode = RedisMode::Single;
    // Single: the node. Sentinel and Cluster: user, password and db for the data nodes, and the
    // first seed as host:port (Sentinel: replaced by the primary once it is known).
    RedisUrl url;
    std::vector<RedisEndpoint> seeds;  // the Sentinels, or the Cluster nodes to start from
    std::string master_name;           // Sentinel: the monitored primary's name
};

// Parses what --redis takes:
//   redis://[user:password@]host[:port][/db]                  one node (parse_redis_url)
//   sentinel://[user:password@]host:port[,host:port...]/name    the primary `name` of these
//                                                              Sentinels (the password is the
//                                                              data nodes'; Sentinels get none)
//   cluster://[user:password@]host:port[,host:port...]          a Redis Cluster (database 0)
// A port left out is 26379 for a Sentinel, else 6379. Says why in `error` on failure, never
// quoting the password.
[[nodiscard]] bool parse_redis_target(std::string_view text, RedisTarget& out, std::string& error);

// The target without its password, for logs.
[[nodiscard]] std::string redacted(const RedisTarget& target);

// `text` with the user-info password of every redis:// or rediss:// URL in it replaced by ***
// (the user name stays), for messages that quote what an operator typed, such as a command-line
// parser's error. A URL ends at white space, a quote or the end of `text`.
[[nodiscard]] std::string redact_redis_urls(std::string_view text);

enum class RedisError : uint8_t {
    None,          // a reply arrived (it may be an error reply: look at reply->type)
    Unavailable,   // not Ready: refused at the call
    Overloaded,    // max_pending commands in flight: refused at the call
    Timeout,       // no reply within the command timeout
    Disconnected,  // the connection was lost (or stopped) before the reply
};

struct RedisOptions {
    uint32_t connect_timeout_ms = 1000;
    uint32_t command_timeout_ms = 1000;
    uint32_t backoff_min_ms = 50;
    uint32_t backoff_max_ms = 2000;
    uint32_t max_pending = 8192;
    std::string
        client_name;  // CLIENT SETNAME in the handshake when not empty (CLIENT LIST shows it)
    bool fetch_client_id = false;  // CLIENT ID in the handshake; then client_id() while Ready
    // ROLE in the handshake: a node that is not a primary (e.g. the old primary after a Sentinel
    // failover, now a replica) fails it, and the client backs off and tries again.
    bool require_primary = false;
    // ROLE in the handshake, and again every role_check_ms while Ready (0: only in the
    // handshake): the node must be a primary, or a replica whose link to its primary is up
    // ("connected"). A replica that restarted and has not synced, or lost its primary, holds no
    // or stale bindings: it fails the check (the connection is dropped) and reads go elsewhere.
    bool require_synced = false;
    uint32_t role_check_ms = 0;
};

class RedisClient {
  public:
    enum class State : uint8_t { Idle, Connecting, Handshake, Ready, Backoff, Stopped };
    // `reply` is valid only during the call; nullptr unless err is None.
    using ReplyFn = void (*)(void* ctx, RedisError err, const redisReply* reply) noexcept;
    using StateFn = void (*)(void* ctx, State state) noexcept;
    // One message of the subscribed channel (["message", channel, payload], RESP2). `message` is
    // valid only during the call.
    using MessageFn = void (*)(void* ctx, const redisReply* message) noexcept;

    RedisClient(uv_loop_t* loop, RedisUrl url, RedisOptions opts);
    ~RedisClient();
    RedisClient(const RedisClient&) = delete;
    RedisClient& operator=(const RedisClient&) = delete;

    // Starts connecting (and reconnecting with back-off for as long as it is not stopped).
    void start() noexcept;
    // Drops the connection for good: pending commands get Disconnected, timers are closed. The
    // object may be destroyed once the loop has run the close callbacks.
    void stop() noexcept;

    // Makes this a subscriber of `channel` (call before start()): every connection subscribes in
    // its handshake and is Ready once Redis confirmed it; `fn` gets each message while Ready.
    // Messages lost while not Ready are gone: watch the state. command() then refuses
    // (Unavailable).
    void subscribe(std::string channel, MessageFn fn, void* ctx);

    // Sends one command. Returns None (the callback will run once) or the reason it was refused.
    [[nodiscard]] RedisError command(int argc, const char* const* argv, const std::size_t* lens,
                                     ReplyFn fn, void* ctx) noexcept;
    // Sends one command already written as RESP (format_resp), with command()'s contract.
    [[nodiscard]] RedisError command_resp(std::string_view resp, ReplyFn fn, void* ctx) noexcept;

    // Points the client at another node (a Sentinel failover): when it differs from the current
    // one, the connection is dropped (pending commands get Disconnected) and the next attempt,
    // soon, goes to `host`:`port`. Same node: nothing happens.
    void retarget(const std::string& host, uint16_t port) noexcept;
    [[nodiscard]] const RedisUrl& url() const noexcept { return url_; }

    [[nodiscard]] State state() const noexcept { return state_; }
    [[nodiscard]] bool ready() const noexcept { return state_ == State::Ready; }
    [[nodiscard]] std::size_t pending() const noexcept { return in_flight_; }
    // This connection's CLIENT ID (with RedisOptions::fetch_client_id, while Ready), else 0.
    [[nodiscard]] int64_t client_id() const noexcept { return client_id_; }
    // Called on every state change (for metrics and health).
    void on_state(StateFn fn, void* ctx) noexcept {
        state_fn_ = fn;
        state_ctx_ = ctx;
    }
    // A short text of the last connection error ("" when none), for logs.
    [[nodiscard]] const std::string& last_error() const noexcept { return last_error_; }

  private:
    struct Slot {
        ReplyFn fn = nullptr;
        void* ctx = nullptr;
        uint64_t deadline = 0;
        bool fired = false;
        RedisClient* owner = nullptr;
    };

    void connect() noexcept;
    void set_state(State s) noexcept;
    void schedule_reconnect() noexcept;
    void drop_connection(const char* why) noexcept;
    void on_tick() noexcept;
    void handshake_done(bool ok, const redisReply* reply) noexcept;
    Slot* acquire() noexcept;
    void release(Slot* s) noexcept;
    RedisError send(int argc, const char* const* argv, const std::size_t* lens, ReplyFn fn,
                    void* ctx) noexcept;
    RedisError send_resp(std::string_view resp, int argc, const char* const* argv,
                         const std::size_t* lens, ReplyFn fn, void* ctx) noexcept;

    static void on_connect(const redisAsyncContext* ac, int status);
    static void on_disconnect(const redisAsyncContext* ac, int status);
    static void on_reply(redisAsyncContext* ac, void* reply, void* privdata);
    static void on_handshake(void* ctx, RedisError err, const redisReply* reply) noexcept;
    static void on_client_id(void* ctx, RedisError err, const redisReply* reply) noexcept;
    static void on_role(void* ctx, RedisError err, const redisReply* reply) noexcept;
    static void on_role_check(void* ctx, RedisError err, const redisReply* reply) noexcept;
    // Whether a ROLE reply passes require_primary / require_synced; else says why in `why`.
    [[nodiscard]] bool role_acceptable(const redisReply* reply, std::string& why) const;
    static void on_push(redisAsyncContext* ac, void* reply, void* privdata);
    void send_handshake(int argc, const char* const* argv, const std::size_t* lens,
                        ReplyFn fn) noexcept;
    void flush_writes() noexcept;
    struct Events;  // the hiredis event glue of one connection
    friend struct Events;

    uv_loop_t* loop_;
    RedisUrl url_;
    RedisOptions opts_;
    State state_ = State::Idle;
    redisAsyncContext* ac_ = nullptr;
    uv_timer_t tick_{};       // command timeouts and connect timeout
    uv_timer_t reconnect_{};  // back-off
    uv_prepare_t flusher_{};  // writes what this turn of the loop queued
    bool flushing_ = false;
    bool timers_open_ = false;
    uint32_t backoff_ms_ = 0;
    uint64_t connect_deadline_ = 0;
    int handshake_left_ = 0;
    int64_t client_id_ = 0;
    uint64_t next_role_check_ = 0;
    bool role_check_pending_ = false;
    bool role_failed_ = false;  // the last ROLE check failed: on_tick drops the connection

    std::string channel_;  // the subscription ("" when none)
    MessageFn message_fn_ = nullptr;
    void* message_ctx_ = nullptr;

    std::vector<Slot> slots_;
    std::vector<Slot*> free_;
    // Slots in send order: Redis answers in order, so the front is always the oldest.
    std::vector<Slot*> ring_;
    std::size_t ring_head_ = 0;
    std::size_t in_flight_ = 0;  // entries in ring_ from ring_head_

    StateFn state_fn_ = nullptr;
    void* state_ctx_ = nullptr;
    std::string last_error_;
};

[[nodiscard]] std::string_view state_text(RedisClient::State s) noexcept;

// Writes a command as RESP (an array of bulk strings) into `out`, followed by a NUL (hiredis reads
// a formatted command as a C string); returns its length without the NUL, or 0 when the command
// and its NUL do not fit `cap` (or argc is 0).
[[nodiscard]] std::size_t format_resp(int argc, const char* const* argv, const std::size_t* lens,
                                      char* out, std::size_t cap) noexcept;

}  // namespace sipr::location
