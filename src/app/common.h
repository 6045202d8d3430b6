#pragma once
// What every daemon's main() shares: flags, logging, the start-up Redis check, signals, and the
// per-worker plumbing between a net::UdpSocket, a Redis connection and a service. Only app/ wires
// concrete things together (DESIGN §3).
#include <spdlog/spdlog.h>
#include <uv.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sipr/base/siphash.h"
#include "sipr/base/stats.h"
#include "sipr/location/cache_tracker.h"
#include "sipr/location/caching_store.h"
#include "sipr/location/redis_client.h"
#include "sipr/location/redis_cluster.h"
#include "sipr/location/redis_sentinel.h"
#include "sipr/location/redis_store.h"
#include "sipr/net/address_set.h"
#include "sipr/net/rate_limiter.h"
#include "sipr/net/udp_socket.h"
#include "sipr/sip/intake.h"

namespace sipr::app {

struct CommonFlags {
    std::string listen;
    std::string redis = "redis://127.0.0.1:6379";
    std::string redis_password_file;  // --redis-password-file / SIPR_REDIS_PASSWORD_FILE
    std::string redis_read;           // --redis-read (sip-redirectd): look-ups go to this replica
    std::string metrics;
    unsigned workers = 0;  // 0: one per core
    std::vector<std::string> domains;
    std::string log_level = "info";
    std::string secret;  // To-tag key, shared by every instance
    uint32_t redis_timeout_ms = 1000;
    std::vector<std::string> allow;   // CIDRs; none: every source
    uint32_t rate_limit = 0;          // datagrams per second per source IP, per worker; 0: off
    uint32_t rate_burst = 0;          // 0: twice the rate
    std::size_t max_response = 1300;  // largest answer over UDP, bytes (RFC 3261 §18.1.1)
    double max_amplification = 3.0;   // answer/request bound for sources outside --allow; 0: off
    // IPv6 sources are rate-limited per prefix of this many bits (1..128); IPv4 per address.
    unsigned rate_limit_v6_prefix = net::SourceRateLimiter::kDefaultV6Prefix;
    std::string spread = "random";  // random: one source reaches every worker; flow: kernel hash
};

// Adds --listen, --redis, --metrics, --workers, --domain, --log-level, --secret, --redis-timeout,
// --allow, --rate-limit, --rate-burst, --rate-limit-v6-prefix, --max-response,
// --max-amplification, --spread, each with its SIPR_* environment equivalent.
void add_common_flags(CLI::App& app, CommonFlags& f);

// Parses the command line. On --help prints it and exits 0; on a bad flag prints one line naming
// it and exits 2.
void parse_or_exit(CLI::App& app, int argc, char** argv);

// Prints "<program>: <message>" on stderr and exits 1: the one-line start-up error. The password
// of any redis:// URL quoted in `message` is masked.
[[noreturn]] void die(const std::string& program, const std::string& message);

// Sets up spdlog on stderr at `level`; exits via die() on an unknown level.
void setup_logging(const std::string& program, const std::string& level);

// Reads the Redis password from the file at `path` (SIPR_REDIS_PASSWORD_FILE, e.g. a systemd
// credential): the whole content, trailing CR/LF removed. Returns "" and sets `password`, or a
// sentence saying what is wrong (missing, unreadable, empty) that never contains the content.
[[nodiscard]] std::string read_password_file(const std::string& path, std::string& password);

// When `password_file` is not empty, takes the Redis password from that file: it supplies or
// overrides the password of `url` (parsed from `url_text`), and "redis://name@host" then names
// the ACL user. Dies with one line (no password in it) when the file cannot be used.
void apply_password_file(const std::string& program, const std::string& url_text,
                         const std::string& password_file, location::RedisUrl& url);

// Connects to Redis synchronously (start-up only), authenticates, selects the database and PINGs.
// Returns "" on success, else a sentence saying what is wrong and what to do.
[[nodiscard]] std::string check_redis(const location::RedisUrl& url, uint32_t timeout_ms);

// Blocks SIGINT, SIGTERM and SIGPIPE in the calling thread and every thread it starts later.
void block_signals();
// Waits for SIGINT or SIGTERM; returns it.
int wait_for_signal();
// Waits up to `ms` milliseconds for SIGINT or SIGTERM; returns it, or 0 when the time ran out.
int wait_for_signal_for(uint64_t ms);

// The To-tag key: from --secret / SIPR_SECRET, else a fixed default (serve() warns about it once
// the daemon runs: every instance of one deployment must share the secret).
[[nodiscard]] base::SipKey tag_key(const std::string& secret);

// Fills a Peer from a source address.
void fill_peer(const sockaddr* from, sip::Peer& out) noexcept;

// Where a daemon's data lives, as checked at start-up (DESIGN §7).
struct RedisSetup {
    location::RedisTarget target;  // what --redis said
    // The node to connect to: the one of redis://, the primary the Sentinels named at start-up,
    // or a Cluster's first seed.
    location::RedisUrl primary;
    bool has_read = false;  // --redis-read given
    location::RedisUrl read;
};

// Resolves and checks --redis (and --redis-read): parses it, applies the password file, asks the
// Sentinels for the primary, and checks that Redis answers (for a Cluster: that one seed does
// and serves slots). Dies with one line on any failure.
[[nodiscard]] RedisSetup check_redis_setup(const std::string& program, const std::string& redis,
                                           const std::string& password_file,
                                           const std::string& redis_read, uint32_t timeout_ms);

// Makes the node of `url` bound its client-side-caching tracking table to `max_keys` (>= 1): reads
// tracking-table-max-keys and, when it is 0 (unbounded) or above, sets it (CONFIG SET; in that
// node's memory only, so each CacheTracker checks again on every reconnect). Returns "" (and in
// `note` what it changed, if anything) or one line saying why not and what to do.
[[nodiscard]] std::string bound_tracking_table(const location::RedisUrl& url, uint64_t max_keys,
                                               uint32_t timeout_ms, std::string& note);

// One worker: its socket, its Redis connection and store, its stats. The service is supplied by
// the daemon through handle(). Lives on one loop thread from open() to the end of the loop.
class Worker : public net::DatagramHandler, public sip::Sender {
  public:
    // With `cache` (ttl_ms > 0) look-ups go through a near-cache kept correct by a second Redis
    // connection (location::CacheTracker); the connections are then named sipr-data-<index> and
    // sipr-inval-<index>.
    Worker(std::size_t index, uv_loop_t* loop, const RedisSetup& redis,
           const location::RedisOptions& ropts, base::ServiceStats& stats,
           const location::NearCacheOptions& cache = {});
    ~Worker() override;

    // Opens the socket on `listen` and starts the Redis connection. With `spread_over` > 0 the
    // port's datagrams go to a random one of that many workers' sockets (--spread random; see
    // net::UdpSocket::spread_randomly), else by the kernel's flow hash. Returns "" or an error.
    [[nodiscard]] std::string open(const sockaddr* listen, unsigned spread_over = 0);
    // Starts receiving; call after the service exists.
    void start_receiving();
    // Graceful drain, first step (on the worker's thread): the service reports itself unhealthy to
    // the load balancer's probe but keeps answering; sipr_draining becomes 1.
    void begin_drain() noexcept;
    // Stops receiving, waits (up to `grace_ms`) until pending() is 0, then closes everything.
    void drain_and_close(uint64_t grace_ms);

    // Responses are queued and leave in one sendmmsg per loop iteration (net::UdpSocket).
    bool send(std::string_view bytes, const sip::Peer& to, uint16_t port) noexcept override;
    [[nodiscard]] std::span<char> send_buffer() noexcept override { return socket_.send_buffer(); }
    // The receive path: the source checks (--allow, then --rate-limit for sources outside
    // --allow), each refusal a counted drop before any parsing; then the service's handle().
    void on_datagram(std::string_view bytes, const sockaddr* from) noexcept override;
    void on_send_failed(std::size_t count) noexcept override;

    // Sets the source checks; call before start_receiving(). `allow` empty: every source is
    // accepted and none is trusted; else only sources in it are, and they are trusted (exempt from
    // the rate limit and, in sip-redirectd, from the amplification guard). `rate_per_s` 0: no
    // rate limit; else a token bucket per source IP of this worker (net::SourceRateLimiter,
    // `burst` datagrams deep, its table hashed under `seed`; an IPv6 source counted by its first
    // `v6_prefix` bits).
    void limit_sources(const net::AddressSet& allow, uint32_t rate_per_s, uint32_t burst,
                       uint64_t seed,
                       unsigned v6_prefix = net::SourceRateLimiter::kDefaultV6Prefix);

    [[nodiscard]] location::RedisStore& store() noexcept { return *store_; }
    // Where look-ups go: the near-cache when on, else store().
    [[nodiscard]] location::LocationStore& lookup_store() noexcept;
    [[nodiscard]] base::ServiceStats& stats() noexcept { return stats_; }
    [[nodiscard]] std::size_t index() const noexcept { return index_; }
    [[nodiscard]] uv_loop_t* loop() const noexcept { return loop_; }

  protected:
    // The service's entry point for one datagram.
    virtual void handle(std::string_view bytes, const sip::Peer& from) noexcept = 0;
    // What is still in flight (drain waits for 0).
    [[nodiscard]] virtual std::size_t pending() const noexcept = 0;
    // Called by begin_drain(): a service with a health probe starts failing it. Default: nothing.
    virtual void on_drain() noexcept {}
    // During handle(): whether the datagram's source is in --allow (a trusted peer).
    [[nodiscard]] bool source_trusted() const noexcept { return trusted_; }

  private:
    static void on_redis_state(void* ctx, location::RedisClient::State s) noexcept;
    static void on_read_state(void* ctx, location::RedisClient::State s) noexcept;
    void redis_state_changed(std::string_view which, location::RedisClient::State s,
                             const std::string& why) noexcept;
    static void on_cache_change(void* ctx, location::CacheTracker::State s,
                                std::string_view why) noexcept;
    void close_all() noexcept;

    std::size_t index_;
    uv_loop_t* loop_;
    base::ServiceStats& stats_;
    std::unique_ptr<location::RedisClient> redis_;  // the primary (redis://, sentinel://)
    std::unique_ptr<location::RedisClient> read_;   // --redis-read
    std::unique_ptr<location::SentinelWatcher> sentinel_;
    std::unique_ptr<location::RedisCluster> cluster_;  // cluster://
    std::unique_ptr<location::SingleRoute> route_;     // redis:// and sentinel://
    std::unique_ptr<location::RedisStore> store_;
    std::unique_ptr<location::CachingStore> cache_;  // with the near-cache only
    std::unique_ptr<location::CacheTracker> tracker_;
    std::unique_ptr<location::ClusterCacheTracker> cluster_tracker_;  // cluster:// with the cache
    net::UdpSocket socket_;
    uv_timer_t drain_timer_{};
    bool drain_timer_open_ = false;
    uint64_t drain_deadline_ = 0;
    sip::Peer peer_;         // scratch for the datagram being handled
    bool trusted_ = false;   // peer_ is in allow_
    net::AddressSet allow_;  // a copy per worker: read-only, on this thread's own cache lines
    std::unique_ptr<net::SourceRateLimiter> limiter_;  // null: no rate limit
};

// What every daemon checks before it starts serving: the listen address, the Redis URL and that
// Redis answers. Dies with one line on any failure.
struct Startup {
    sockaddr_storage listen{};
    net::AddressSet allow;  // --allow
    RedisSetup redis;
    unsigned workers = 1;
};
[[nodiscard]] Startup check_startup(const std::string& program, const CommonFlags& common);

// Makes worker `index` on its loop with its stats shard.
using WorkerFactory = std::function<std::unique_ptr<Worker>(std::size_t index, uv_loop_t* loop,
                                                            base::ServiceStats& stats)>;

// Runs a daemon: the metrics exporter, one Worker per thread on the shared port, until SIGINT or
// SIGTERM. On SIGTERM with `drain_seconds` > 0 the workers first drain (Worker::begin_drain: the
// health probe fails, requests are still answered) for that long, or until a second SIGTERM or
// SIGINT; SIGINT stops at once. Then each worker stops receiving, answers what is in flight (up
// to `inflight_ms`) and closes. Returns the exit status (0); start-up failures die with one line.
int serve(const std::string& program, const CommonFlags& common, const Startup& startup,
          const WorkerFactory& make, uint64_t inflight_ms, uint32_t drain_seconds = 0);

}  // namespace sipr::app
