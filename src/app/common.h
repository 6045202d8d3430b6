#pragma once
// What every daemon's main() shares: flags, logging, signals, and the per-worker plumbing between
// a net::UdpSocket, the source checks, the location backend and a service. Only app/ wires
// concrete things together (DESIGN §3); everything about Redis is in location/.
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
#include "sipr/location/backend.h"
#include "sipr/metrics/exporter.h"
#include "sipr/net/address_set.h"
#include "sipr/net/rate_limiter.h"
#include "sipr/net/udp_socket.h"
#include "sipr/sip/intake.h"
#include "stream_front.h"

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
    // TCP on the --listen address too (add_stream_flags); limits for the whole instance.
    bool tcp = false;
    std::size_t max_response_stream = 65000;  // largest answer over TCP, bytes
    std::size_t tcp_max_connections = 4096;
    std::size_t tcp_max_per_source = 256;
    uint32_t tcp_idle_timeout_s = 300;
    uint32_t tcp_head_timeout_ms = 5000;
    std::size_t tcp_max_write_buffer = 256 * 1024;
    std::size_t stream_max_message = 8192;  // set by the daemon: its largest request (513 beyond)
};

// Adds --listen, --redis, --metrics, --workers, --domain, --log-level, --secret, --redis-timeout,
// --allow, --rate-limit, --rate-burst, --rate-limit-v6-prefix, --max-response,
// --max-amplification, --spread, each with its SIPR_* environment equivalent.
void add_common_flags(CLI::App& app, CommonFlags& f);

// Sets f.tcp and adds --max-response-stream, --tcp-max-connections, --tcp-max-per-source,
// --tcp-idle-timeout, --tcp-head-timeout, --tcp-max-write-buffer, each with its SIPR_* equivalent.
void add_stream_flags(CLI::App& app, CommonFlags& f);

// Parses the command line. On --help prints it and exits 0; on a bad flag prints one line naming
// it and exits 2.
void parse_or_exit(CLI::App& app, int argc, char** argv);

// Prints "<program>: <message>" on stderr and exits 1: the one-line start-up error. The password
// of any redis:// URL quoted in `message` is masked.
[[noreturn]] void die(const std::string& program, const std::string& message);

// Runs `body` (a program's main) so that no exception leaves main: app/ is where library
// exceptions are caught (src/app/README.md). Any exception but std::bad_alloc ends the program with
// "<program>: <what>" on stderr and returns 1; std::bad_alloc terminates (src/README.md,
// "Allocation failure terminates").
int guarded_main(const char* program, int (*body)(int, char**), int argc, char** argv) noexcept;

// Sets up spdlog on stderr at `level`; exits via die() on an unknown level.
void setup_logging(const std::string& program, const std::string& level);

// Reads the Redis password from the file at `path` (SIPR_REDIS_PASSWORD_FILE, e.g. a systemd
// credential): the whole content, trailing CR/LF removed. Returns "" and sets `password`, or a
// sentence saying what is wrong (missing, unreadable, empty) that never contains the content.
[[nodiscard]] std::string read_password_file(const std::string& path, std::string& password);

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

// Resolves and checks --redis (and --redis-read, "" when not given) with the password of
// `password_file` (when not ""): location::resolve_redis_setup. Dies with one line on any failure.
[[nodiscard]] location::RedisSetup check_redis_setup(const std::string& program,
                                                     const std::string& redis,
                                                     const std::string& password_file,
                                                     const std::string& redis_read,
                                                     uint32_t timeout_ms);

// A daemon's service as its worker drives it, on the worker's loop thread.
class Service {
  public:
    virtual ~Service() = default;
    // One datagram from `from`; `trusted`: its source is in --allow.
    virtual void handle(std::string_view bytes, const sip::Peer& from, bool trusted) noexcept = 0;
    // What is still in flight (drain waits for 0).
    [[nodiscard]] virtual std::size_t pending() const noexcept = 0;
    // Graceful drain began: a service with a health probe starts failing it. Default: nothing.
    virtual void on_drain() noexcept {}
    // One message framed from a stream connection (`from.transport` Tcp). Returns true when its
    // answer is still to come through the worker's Sender; the connection hands over nothing
    // more until then, so answers leave in the order of the requests. Default: handle() (a
    // connection's source is validated by its handshake: trusted) and nothing awaited, right
    // only for a service that answers at once.
    virtual bool handle_stream(std::string_view bytes, const sip::Peer& from) noexcept {
        handle(bytes, from, true);
        return false;
    }
    // Answers `status` / `reason` to the request whose head is `head` (a stream message that
    // cannot be framed), when the head holds enough to form a response. Returns whether it did.
    // Default: never.
    virtual bool reject(std::string_view head, const sip::Peer& from, uint16_t status,
                        std::string_view reason) noexcept {
        (void)head, (void)from, (void)status, (void)reason;
        return false;
    }
};

// One worker: its socket, its source checks, its location backend, its service and its stats.
// Lives on one loop thread from open() to the end of the loop.
class Worker final : public net::DatagramHandler, public sip::Sender {
  public:
    Worker(std::size_t index, uv_loop_t* loop, metrics::WorkerStats& stats,
           std::unique_ptr<location::Backend> backend);
    ~Worker() override;

    // The service (built on backend() and this worker as its Sender); call before open().
    void set_service(std::unique_ptr<Service> service) noexcept { service_ = std::move(service); }

    // TCP beside UDP (RFC 3261 §18.2.1): open() then also listens on the UDP socket's address and
    // port. Call before open().
    void enable_streams(const StreamOptions& options);

    // Opens the socket on `listen` and starts the backend. With `spread_over` > 0 the port's
    // datagrams go to a random one of that many workers' sockets (--spread random; see
    // net::UdpSocket::spread_randomly), else by the kernel's flow hash. Returns "" or an error.
    [[nodiscard]] std::string open(const sockaddr* listen, unsigned spread_over = 0);
    // Starts receiving; call after the service exists.
    void start_receiving();
    // Graceful drain, first step (on the worker's thread): the service reports itself unhealthy to
    // the load balancer's probe but keeps answering; sipr_draining becomes 1.
    void begin_drain() noexcept;
    // Stops receiving, waits (up to `grace_ms`) until the service's pending() is 0, then closes
    // everything.
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

    [[nodiscard]] location::Backend& backend() noexcept { return *backend_; }
    [[nodiscard]] metrics::WorkerStats& stats() noexcept { return stats_; }
    [[nodiscard]] std::size_t index() const noexcept { return index_; }
    [[nodiscard]] uv_loop_t* loop() const noexcept { return loop_; }

  private:
    static void on_notice(void* ctx, const location::BackendNotice& n) noexcept;
    void close_all() noexcept;

    std::size_t index_;
    uv_loop_t* loop_;
    metrics::WorkerStats& stats_;
    std::unique_ptr<location::Backend> backend_;
    std::unique_ptr<Service> service_;  // uses backend_ and this: declared after, destroyed first
    net::UdpSocket socket_;
    uv_timer_t drain_timer_{};
    bool drain_timer_open_ = false;
    uint64_t drain_deadline_ = 0;
    sip::Peer peer_;         // scratch for the datagram being handled
    net::AddressSet allow_;  // a copy per worker: read-only, on this thread's own cache lines
    std::unique_ptr<net::SourceRateLimiter> limiter_;  // null: no rate limit
    std::unique_ptr<StreamFront> stream_;              // null: UDP only
};

// What every daemon checks before it starts serving: the listen address, the Redis URL and that
// Redis answers. Dies with one line on any failure.
struct Startup {
    sockaddr_storage listen{};
    net::AddressSet allow;  // --allow
    location::RedisSetup redis;
    unsigned workers = 1;
};
[[nodiscard]] Startup check_startup(const std::string& program, const CommonFlags& common);

// Makes a worker's service, on the worker's thread, once the worker and its backend exist.
using ServiceFactory = std::function<std::unique_ptr<Service>(Worker& worker)>;

// Runs a daemon: the metrics exporter, one Worker per thread on the shared port (each with a
// location::Backend built from `backend` and a service from `make`), until SIGINT or SIGTERM. On
// SIGTERM with `drain_seconds` > 0 the workers first drain (Worker::begin_drain: the health probe
// fails, requests are still answered) for that long, or until a second SIGTERM or SIGINT; SIGINT
// stops at once. Then each worker stops receiving, answers what is in flight (up to
// `inflight_ms`) and closes. Returns the exit status (0); start-up failures die with one line.
int serve(const std::string& program, const CommonFlags& common, const Startup& startup,
          const location::BackendOptions& backend, const ServiceFactory& make, uint64_t inflight_ms,
          uint32_t drain_seconds = 0);

}  // namespace sipr::app
