#pragma once
// What every daemon's main() shares: flags, logging, the start-up Redis check, signals, and the
// per-worker plumbing between a net::UdpSocket, a Redis connection and a service. Only app/ wires
// concrete things together (DESIGN §3).
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sipr/base/siphash.h"
#include "sipr/base/stats.h"
#include "sipr/location/redis_client.h"
#include "sipr/location/redis_store.h"
#include "sipr/net/udp_socket.h"
#include "sipr/sip/intake.h"

namespace sipr::app {

struct CommonFlags {
    std::string listen;
    std::string redis = "redis://127.0.0.1:6379";
    std::string metrics;
    unsigned workers = 0;  // 0: one per core
    std::vector<std::string> domains;
    std::string log_level = "info";
    std::string secret;  // To-tag key, shared by every instance
    uint32_t redis_timeout_ms = 1000;
};

// Adds --listen, --redis, --metrics, --workers, --domain, --log-level, --secret, each with its
// SIPR_* environment equivalent.
void add_common_flags(CLI::App& app, CommonFlags& f);

// Parses the command line. On --help prints it and exits 0; on a bad flag prints one line naming
// it and exits 2.
void parse_or_exit(CLI::App& app, int argc, char** argv);

// Prints "<program>: <message>" on stderr and exits 1: the one-line start-up error.
[[noreturn]] void die(const std::string& program, const std::string& message);

// Sets up spdlog on stderr at `level`; exits via die() on an unknown level.
void setup_logging(const std::string& program, const std::string& level);

// Connects to Redis synchronously (start-up only), authenticates, selects the database and PINGs.
// Returns "" on success, else a sentence saying what is wrong and what to do.
[[nodiscard]] std::string check_redis(const location::RedisUrl& url, uint32_t timeout_ms);

// Blocks SIGINT, SIGTERM and SIGPIPE in the calling thread and every thread it starts later.
void block_signals();
// Waits for SIGINT or SIGTERM; returns it.
int wait_for_signal();

// The To-tag key: from --secret / SIPR_SECRET, else a fixed default (serve() warns about it once
// the daemon runs: every instance of one deployment must share the secret).
[[nodiscard]] base::SipKey tag_key(const std::string& secret);

// Fills a Peer from a source address.
void fill_peer(const sockaddr* from, sip::Peer& out) noexcept;

// One worker: its socket, its Redis connection and store, its stats. The service is supplied by
// the daemon through handle(). Lives on one loop thread from open() to the end of the loop.
class Worker : public net::DatagramHandler, public sip::Sender {
public:
    Worker(std::size_t index, uv_loop_t* loop, const location::RedisUrl& url,
           const location::RedisOptions& ropts, base::ServiceStats& stats);
    ~Worker() override;

    // Opens the socket on `listen` and starts the Redis connection. Returns "" or an error.
    [[nodiscard]] std::string open(const sockaddr* listen);
    // Starts receiving; call after the service exists.
    void start_receiving();
    // Stops receiving, waits (up to `grace_ms`) until pending() is 0, then closes everything.
    void drain_and_close(uint64_t grace_ms);

    bool send(std::string_view bytes, const sip::Peer& to, uint16_t port) noexcept override;
    void on_datagram(std::string_view bytes, const sockaddr* from) noexcept override;

    [[nodiscard]] location::RedisStore& store() noexcept { return *store_; }
    [[nodiscard]] location::RedisClient& redis() noexcept { return *redis_; }
    [[nodiscard]] base::ServiceStats& stats() noexcept { return stats_; }
    [[nodiscard]] std::size_t index() const noexcept { return index_; }
    [[nodiscard]] uv_loop_t* loop() const noexcept { return loop_; }

protected:
    // The service's entry point for one datagram.
    virtual void handle(std::string_view bytes, const sip::Peer& from) noexcept = 0;
    // What is still in flight (drain waits for 0).
    [[nodiscard]] virtual std::size_t pending() const noexcept = 0;

private:
    static void on_redis_state(void* ctx, location::RedisClient::State s) noexcept;
    void close_all() noexcept;

    std::size_t index_;
    uv_loop_t* loop_;
    base::ServiceStats& stats_;
    std::unique_ptr<location::RedisClient> redis_;
    std::unique_ptr<location::RedisStore> store_;
    net::UdpSocket socket_;
    uv_timer_t drain_timer_{};
    bool drain_timer_open_ = false;
    uint64_t drain_deadline_ = 0;
    sip::Peer peer_;  // scratch for the datagram being handled
};

// What every daemon checks before it starts serving: the listen address, the Redis URL and that
// Redis answers. Dies with one line on any failure.
struct Startup {
    sockaddr_storage listen{};
    location::RedisUrl redis;
    unsigned workers = 1;
};
[[nodiscard]] Startup check_startup(const std::string& program, const CommonFlags& common);

// Makes worker `index` on its loop with its stats shard.
using WorkerFactory =
    std::function<std::unique_ptr<Worker>(std::size_t index, uv_loop_t* loop, base::ServiceStats& stats)>;

// Runs a daemon: the metrics exporter, one Worker per thread on the shared port, until SIGINT or
// SIGTERM; then each worker stops receiving, answers what is in flight (up to `drain_ms`) and
// closes. Returns the exit status (0); start-up failures die with one line.
int serve(const std::string& program, const CommonFlags& common, const Startup& startup,
          const WorkerFactory& make, uint64_t drain_ms);

}  // namespace sipr::app
