#include "common.h"

#include <pthread.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <csignal>
#include <ctime>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <random>
#include <thread>

#include "sipr/metrics/exporter.h"
#include "sipr/net/endpoint.h"
#include "sipr/net/worker_group.h"

namespace sipr::app {

void add_common_flags(CLI::App& app, CommonFlags& f) {
    app.add_option("--listen", f.listen, "UDP address to receive SIP on, host:port")
        ->envname("SIPR_LISTEN")
        ->capture_default_str();
    app.add_option("--redis", f.redis,
                   "Redis: redis://[user:password@]host:port[/db], or a primary found through "
                   "Sentinels: sentinel://[user:password@]host:port,host:port,.../mastername, or a "
                   "Redis Cluster: cluster://[user:password@]host:port,host:port,...")
        ->envname("SIPR_REDIS");
    app.add_option("--redis-password-file", f.redis_password_file,
                   "file holding the Redis password (overrides the URL's; a trailing newline "
                   "is ignored)")
        ->envname("SIPR_REDIS_PASSWORD_FILE");
    app.add_option("--metrics", f.metrics, "HTTP address for GET /metrics, host:port")
        ->envname("SIPR_METRICS")
        ->capture_default_str();
    app.add_option("--workers", f.workers,
                   "worker threads (0: one per core, one fewer when --redis is on this machine "
                   "(a loopback address): Redis needs a core of its own)")
        ->envname("SIPR_WORKERS")
        ->capture_default_str();
    app.add_option("--domain", f.domains, "served domain (repeatable; none: serve all)")
        ->envname("SIPR_DOMAIN")
        ->delimiter(',');
    app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error, off")
        ->envname("SIPR_LOG_LEVEL")
        ->capture_default_str();
    app.add_option("--secret", f.secret,
                   "secret shared by all instances, keys the To-tag (prefer SIPR_SECRET)")
        ->envname("SIPR_SECRET");
    app.add_option("--redis-timeout", f.redis_timeout_ms, "Redis connect and command timeout, ms")
        ->envname("SIPR_REDIS_TIMEOUT")
        ->capture_default_str();
    app.add_option("--allow", f.allow,
                   "accept requests only from this CIDR (repeatable; IPv4 or IPv6; a bare address "
                   "is one host); these sources are trusted: no rate limit, no amplification guard")
        ->envname("SIPR_ALLOW")
        ->delimiter(',');
    app.add_option("--rate-limit", f.rate_limit,
                   "datagrams per second per source IP for sources outside --allow; excess is "
                   "dropped (0: off). With --spread random each of N workers allows 1/N of it "
                   "and of --rate-burst (rounded up); with --spread flow each worker allows it all")
        ->envname("SIPR_RATE_LIMIT")
        ->check(CLI::Range(0u, net::SourceRateLimiter::kMaxRate))
        ->capture_default_str();
    app.add_option("--rate-burst", f.rate_burst,
                   "datagrams a source may send at once under --rate-limit (0: twice the rate)")
        ->envname("SIPR_RATE_BURST")
        ->check(CLI::Range(0u, net::SourceRateLimiter::kMaxBurst))
        ->capture_default_str();
    app.add_option("--max-response", f.max_response,
                   "largest answer, bytes (one UDP datagram, RFC 3261 §18.1.1): a 302 loses its "
                   "lowest-q contacts to fit, a registrar's 200 the bindings of other REGISTERs "
                   "first")
        ->envname("SIPR_MAX_RESPONSE")
        ->check(CLI::Range(std::size_t{512}, std::size_t{65000}))
        ->capture_default_str();
    app.add_option("--max-amplification", f.max_amplification,
                   "no answer to a source outside --allow is larger than this many times its "
                   "request, so a spoofed source cannot make us a reflector (0: off, else at "
                   "least 1)")
        ->envname("SIPR_MAX_AMPLIFICATION")
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                double x = std::strtod(v.c_str(), nullptr);
                if (x == 0 || (x >= 1 && x <= 1000)) return {};
                return "must be 0 (off) or from 1 (answers as large as their request) to 1000";
            },
            "0 or 1..1000"))
        ->capture_default_str();
    app.add_option("--rate-limit-v6-prefix", f.rate_limit_v6_prefix,
                   "--rate-limit counts an IPv6 source by this many leading bits (1..128; one host "
                   "usually owns a /64); IPv4 sources, v4-mapped included, by the address")
        ->envname("SIPR_RATE_LIMIT_V6_PREFIX")
        ->check(CLI::Range(1u, 128u))
        ->capture_default_str();
    app.add_option("--spread", f.spread,
                   "how datagrams on the shared port reach the workers: random (each datagram to "
                   "any worker, so one source such as a load balancer uses every core) or flow "
                   "(the kernel's hash of source and destination: one source socket stays on one "
                   "worker)")
        ->envname("SIPR_SPREAD")
        ->check(CLI::IsMember({"random", "flow"}))
        ->capture_default_str();
}

void add_stream_flags(CLI::App& app, CommonFlags& f) {
    f.tcp = true;
    app.add_option("--max-response-stream", f.max_response_stream,
                   "largest answer over TCP, bytes: a 302 lists every contact up to it (the UDP "
                   "cut of --max-response and the amplification guard apply to UDP only)")
        ->envname("SIPR_MAX_RESPONSE_STREAM")
        ->check(CLI::Range(std::size_t{512}, std::size_t{65000}))
        ->capture_default_str();
    app.add_option("--tcp-max-connections", f.tcp_max_connections,
                   "TCP connections open at once on this instance (split evenly over the "
                   "workers, rounded up); beyond, new ones are reset")
        ->envname("SIPR_TCP_MAX_CONNECTIONS")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
        ->capture_default_str();
    app.add_option("--tcp-max-per-source", f.tcp_max_per_source,
                   "TCP connections open at once from one source address (enforced per worker as "
                   "its share, rounded up; the kernel spreads a source's connections over the "
                   "workers); beyond, new ones are reset")
        ->envname("SIPR_TCP_MAX_PER_SOURCE")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
        ->capture_default_str();
    app.add_option("--tcp-idle-timeout", f.tcp_idle_timeout_s,
                   "close a TCP connection with nothing read or written for this long, s")
        ->envname("SIPR_TCP_IDLE_TIMEOUT")
        ->check(CLI::Range(1u, 86400u))
        ->capture_default_str();
    app.add_option("--tcp-head-timeout", f.tcp_head_timeout_ms,
                   "close a TCP connection whose message head is not complete this long after "
                   "it began (slow-loris), ms")
        ->envname("SIPR_TCP_HEAD_TIMEOUT")
        ->check(CLI::Range(100u, 600000u))
        ->capture_default_str();
    app.add_option("--tcp-max-write-buffer", f.tcp_max_write_buffer,
                   "unsent answer bytes kept for one TCP connection; a client that reads so "
                   "little that more pile up is disconnected")
        ->envname("SIPR_TCP_MAX_WRITE_BUFFER")
        ->check(CLI::Range(std::size_t{65536}, std::size_t{64} << 20))
        ->capture_default_str();
}

void parse_or_exit(CLI::App& app, int argc, char** argv) {
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        std::exit(app.exit(e));
    } catch (const CLI::CallForAllHelp& e) {
        std::exit(app.exit(e));
    } catch (const CLI::ParseError& e) {
        // CLI11 may quote the offending argument: mask a Redis URL's password in it.
        std::fprintf(stderr, "%s: %s (see --help)\n", app.get_name().c_str(),
                     location::redact_redis_urls(e.what()).c_str());
        std::exit(2);
    }
}

void die(const std::string& program, const std::string& message) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), location::redact_redis_urls(message).c_str());
    std::exit(1);
}

int guarded_main(const char* program, int (*body)(int, char**), int argc, char** argv) noexcept {
    try {
        return body(argc, argv);
    } catch (const std::bad_alloc&) {
        std::terminate();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", program, e.what());
    } catch (...) {
        std::fprintf(stderr, "%s: unknown exception\n", program);
    }
    return 1;
}

void setup_logging(const std::string& program, const std::string& level) {
    auto lvl = spdlog::level::from_str(level);
    if (lvl == spdlog::level::off && level != "off")
        die(program,
            "unknown --log-level '" + level + "' (use trace, debug, info, warn, error, off)");
    auto logger = spdlog::stderr_color_mt(program);
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n[%t] %l: %v");
    logger->set_level(lvl);
    spdlog::set_default_logger(logger);
}

std::string read_password_file(const std::string& path, std::string& password) {
    const std::string what = "the Redis password file '" + path + "' (SIPR_REDIS_PASSWORD_FILE)";
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return "cannot read " + what + ": " + std::strerror(errno);
    std::string text;
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        text.append(buf, n);
        if (text.size() > 64 * 1024) break;  // no password is that long: a wrong file
    }
    bool failed = std::ferror(f) != 0;
    int err = errno;
    std::fclose(f);
    if (failed) return "cannot read " + what + ": " + std::strerror(err);
    if (text.size() > 64 * 1024) return what + " is over 64 KiB: is it the right file?";
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (text.empty()) return what + " is empty: write the password into it";
    password = std::move(text);
    return {};
}

void block_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int wait_for_signal() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    return sig;
}

int wait_for_signal_for(uint64_t ms) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const uint64_t deadline_ns = static_cast<uint64_t>(now.tv_sec) * 1000000000u +
                                 static_cast<uint64_t>(now.tv_nsec) + ms * 1000000u;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        const uint64_t now_ns =
            static_cast<uint64_t>(now.tv_sec) * 1000000000u + static_cast<uint64_t>(now.tv_nsec);
        if (now_ns >= deadline_ns) return 0;
        const uint64_t left = deadline_ns - now_ns;
        timespec wait{static_cast<time_t>(left / 1000000000u),
                      static_cast<long>(left % 1000000000u)};
        int sig = sigtimedwait(&set, nullptr, &wait);
        if (sig > 0) return sig;
        if (errno == EAGAIN) return 0;
        // EINTR (another signal, e.g. a debugger's): wait for what is left.
    }
}

base::SipKey tag_key(const std::string& secret) {
    return base::derive_sip_key(secret.empty() ? std::string_view("sip-redirect default to-tag key")
                                               : std::string_view(secret));
}

void fill_peer(const sockaddr* from, sip::Peer& out) noexcept {
    std::memcpy(&out.addr, from, net::sockaddr_len(from));
    out.ip_len = static_cast<uint8_t>(net::format_ip(from, out.ip));
    out.port = net::port_of(from);
}

location::RedisSetup check_redis_setup(const std::string& program, const std::string& redis,
                                       const std::string& password_file,
                                       const std::string& redis_read, uint32_t timeout_ms) {
    std::string password;
    if (!password_file.empty())
        if (std::string why = read_password_file(password_file, password); !why.empty())
            die(program, why);
    location::RedisSetup s;
    if (std::string why = location::resolve_redis_setup(
            redis, redis_read, password_file.empty() ? nullptr : &password, timeout_ms, s);
        !why.empty())
        die(program, why);
    return s;
}

Worker::Worker(std::size_t index, uv_loop_t* loop, metrics::WorkerStats& stats,
               std::unique_ptr<location::Backend> backend)
    : index_(index), loop_(loop), stats_(stats), backend_(std::move(backend)) {
    backend_->on_notice(&Worker::on_notice, this);
}

Worker::~Worker() = default;

void Worker::on_notice(void* ctx, const location::BackendNotice& n) noexcept {
    auto* self = static_cast<Worker*>(ctx);
    using location::BackendEvent;
    std::string_view which = n.link == location::RedisLink::Primary ? "Redis primary"
                             : n.link == location::RedisLink::Replica
                                 ? "Redis replica (--redis-read)"
                                 : "Redis";
    switch (n.event) {
        case BackendEvent::Ready:
            spdlog::info("worker {}: {} ready", self->index_, which);
            break;
        case BackendEvent::Unreachable:
            spdlog::warn("worker {}: {} unreachable ({}), retrying", self->index_, which, n.detail);
            break;
        case BackendEvent::PrimaryMoved:
            spdlog::info("worker {}: the Sentinels name a new primary, {}: reconnecting",
                         self->index_, n.detail);
            break;
        case BackendEvent::CacheOn:
            spdlog::info("worker {}: near-cache on (Redis tracks the keys it reads)", self->index_);
            break;
        case BackendEvent::CacheOff:
            spdlog::warn("worker {}: near-cache off and flushed ({})", self->index_, n.detail);
            break;
    }
}

void Worker::enable_streams(const StreamOptions& options) {
    stream_ = std::make_unique<StreamFront>(options, stats_.stream);
}

std::string Worker::open(const sockaddr* listen, unsigned spread_over) {
    int rc = socket_.open(loop_, listen);
    if (rc != 0)
        return "cannot listen on " + net::to_string(listen) + ": " + uv_strerror(rc) +
               " (is another server on that port? choose another with --listen)";
    if (stream_) {
        // The UDP socket's own address: with port 0 the kernel's choice, shared by both.
        const sockaddr_storage bound = socket_.local_address();
        rc =
            stream_->open(loop_, reinterpret_cast<const sockaddr*>(&bound), allow_, service_.get());
        if (rc != 0) {
            socket_.close();
            return "cannot listen on tcp " +
                   net::to_string(reinterpret_cast<const sockaddr*>(&bound)) + ": " +
                   uv_strerror(rc) +
                   " (is another server on that port? choose another with --listen)";
        }
    }
    // A start-up error, not a silent fallback: asked for (the default), random spreading that
    // does not happen would leave a load balancer on one core with nothing saying so.
    if (spread_over > 0 && (rc = socket_.spread_randomly(spread_over)) != 0) {
        socket_.close();
        return std::string("cannot spread datagrams over the workers (SO_ATTACH_REUSEPORT_CBPF: ") +
               uv_strerror(rc) + "); start with --spread flow to keep the kernel's flow hash";
    }
    backend_->start();
    return {};
}

void Worker::start_receiving() {
    int rc = socket_.start(this);
    if (rc != 0) spdlog::error("worker {}: cannot start receiving: {}", index_, uv_strerror(rc));
}

bool Worker::send(std::string_view bytes, const sip::Peer& to, uint16_t port) noexcept {
    if (to.transport != sip::Transport::Udp) return stream_ && stream_->send(bytes, to);
    sockaddr_storage dst = to.addr;
    if (dst.ss_family == AF_INET)
        reinterpret_cast<sockaddr_in*>(&dst)->sin_port = htons(port);
    else
        reinterpret_cast<sockaddr_in6*>(&dst)->sin6_port = htons(port);
    return socket_.queue(bytes, reinterpret_cast<const sockaddr*>(&dst));
}

void Worker::on_send_failed(std::size_t count) noexcept {
    for (std::size_t i = 0; i < count; ++i) stats_.messages.drop(base::DropReason::SendFailed);
}

void Worker::limit_sources(const net::AddressSet& allow, uint32_t rate_per_s, uint32_t burst,
                           uint64_t seed, unsigned v6_prefix) {
    allow_ = allow;
    limiter_.reset();
    // Sources in --allow are exempt from the rate limit, so with --allow given it never applies.
    if (rate_per_s != 0 && allow_.empty())
        limiter_ = std::make_unique<net::SourceRateLimiter>(
            rate_per_s, burst != 0 ? burst : 2 * rate_per_s,
            net::SourceRateLimiter::kDefaultEntries, seed, v6_prefix);
}

void Worker::on_datagram(std::string_view bytes, const sockaddr* from) noexcept {
    stats_.messages.datagrams.inc();
    bool trusted = false;
    if (!allow_.empty() || limiter_) {
        // Before anything is parsed or formatted: a refused datagram costs a hash or a binary
        // search, and its counter.
        net::IpKey key;
        if (!net::ip_key(from, key)) {
            stats_.messages.drop(base::DropReason::Denied);
            return;
        }
        if (!allow_.empty()) {
            if (!allow_.contains(key)) {
                stats_.messages.drop(base::DropReason::Denied);
                return;
            }
            // Trusted peers (a carrier's own proxies and SBCs) are the heavy senders a
            // per-source limit would hurt first, and their address is the one a flooder would
            // spoof to get them limited: they are exempt.
            trusted = true;
        } else if (!limiter_->allow(key, uv_now(loop_))) {  // the loop's cached time: no syscall
            stats_.messages.drop(base::DropReason::RateLimited);
            return;
        }
    }
    fill_peer(from, peer_);
    service_->handle(bytes, peer_, trusted);
}

void Worker::begin_drain() noexcept {
    stats_.draining.set(1);
    service_->on_drain();
}

void Worker::drain_and_close(uint64_t grace_ms) {
    socket_.stop();
    if (stream_) stream_->stop_accepting();
    drain_deadline_ = uv_now(loop_) + grace_ms;
    if (service_->pending() == 0) {
        close_all();
        return;
    }
    uv_timer_init(loop_, &drain_timer_);
    drain_timer_.data = this;
    drain_timer_open_ = true;
    uv_timer_start(
        &drain_timer_,
        [](uv_timer_t* t) {
            auto* self = static_cast<Worker*>(t->data);
            if (self->service_->pending() == 0 || uv_now(self->loop_) >= self->drain_deadline_)
                self->close_all();
        },
        5, 5);
}

void Worker::close_all() noexcept {
    if (drain_timer_open_) {
        uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
        drain_timer_open_ = false;
    }
    socket_.close();
    if (stream_) stream_->close();
    backend_->stop();
}

Startup check_startup(const std::string& program, const CommonFlags& common) {
    Startup s;
    if (!net::parse_endpoint(common.listen, s.listen))
        die(program, "--listen '" + common.listen + "' is not host:port (e.g. 127.0.0.1:5060)");
    for (const std::string& cidr : common.allow)
        if (std::string why = s.allow.add(cidr); !why.empty()) die(program, "--allow " + why);
    s.redis = check_redis_setup(program, common.redis, common.redis_password_file,
                                common.redis_read, common.redis_timeout_ms);
    s.workers = common.workers;
    if (s.workers == 0) {
        // One per core; one core fewer when Redis runs on this machine (a loopback --redis):
        // Redis's one busy thread then competes with the workers, and on a small box one worker
        // fewer answers more (bench/RESULTS.md, --workers 1 against 2 with Redis local).
        s.workers = std::max(1u, std::thread::hardware_concurrency());
        if (s.workers > 1 && location::redis_is_local(s.redis)) --s.workers;
    }
    return s;
}

int serve(const std::string& program, const CommonFlags& common, const Startup& startup,
          const location::BackendOptions& backend, const ServiceFactory& make, uint64_t inflight_ms,
          uint32_t drain_seconds) {
    const unsigned n = startup.workers;
    block_signals();
    std::vector<std::unique_ptr<metrics::WorkerStats>> stats;
    std::vector<const metrics::WorkerStats*> stat_ptrs;
    for (unsigned i = 0; i < n; ++i) {
        stats.push_back(std::make_unique<metrics::WorkerStats>());
        stat_ptrs.push_back(stats.back().get());
    }
    std::unique_ptr<metrics::Exporter> exporter;
    try {
        exporter = std::make_unique<metrics::Exporter>(common.metrics, program, stat_ptrs);
    } catch (const std::exception& e) {
        die(program, std::string(e.what()) + " (choose another with --metrics)");
    }

    // Seeds for the rate limiters' tables: unpredictable, so sources cannot be picked to collide.
    std::vector<uint64_t> seeds(n);
    for (unsigned i = 0; i < n; ++i) {
        uint64_t seed = uv_hrtime() * 0x9e3779b97f4a7c15ull + i;
        try {
            std::random_device rd;
            seed ^= uint64_t{rd()} << 32 | rd();
        } catch (const std::exception&) {
            // No entropy source: the clock-based seed still differs per start.
        }
        seeds[i] = seed;
    }

    // --spread random: every worker sees about 1/n of each source's datagrams, so each enforces
    // 1/n of --rate-limit and --rate-burst (rounded up, at least 1) and the source as a whole
    // meets the flags' limit. --spread flow: a source socket stays on one worker, which enforces
    // the whole limit (a source sending from several ports may reach several workers).
    const unsigned spread_over = common.spread == "random" && n > 1 ? n : 0;
    const uint32_t burst = common.rate_burst != 0 ? common.rate_burst : 2 * common.rate_limit;
    auto share = [&](uint32_t total) -> uint32_t {
        if (spread_over == 0 || total == 0) return total;
        return (total + spread_over - 1) / spread_over;
    };

    // The stream limits are the instance's: each worker enforces its share.
    StreamOptions streams;
    streams.enabled = common.tcp;
    streams.max_message = common.stream_max_message;
    streams.limits.max_connections = (common.tcp_max_connections + n - 1) / n;
    streams.limits.max_per_source = (common.tcp_max_per_source + n - 1) / n;
    streams.limits.idle_ms = uint64_t{common.tcp_idle_timeout_s} * 1000u;
    streams.limits.head_ms = common.tcp_head_timeout_ms;
    streams.limits.max_write_buffer = common.tcp_max_write_buffer;

    std::vector<std::unique_ptr<Worker>> workers(n);
    std::vector<std::string> errors(n);
    net::WorkerGroup group;
    bool ok = group.start(
        n,
        [&](std::size_t i, uv_loop_t* loop) {
            location::BackendOptions o = backend;
            o.index = i;
            workers[i] = std::make_unique<Worker>(
                i, loop, *stats[i],
                std::make_unique<location::Backend>(loop, startup.redis, o, stats[i]->store));
            workers[i]->set_service(make(*workers[i]));
            if (common.tcp) workers[i]->enable_streams(streams);
            workers[i]->limit_sources(startup.allow, share(common.rate_limit), share(burst),
                                      seeds[i], common.rate_limit_v6_prefix);
            errors[i] =
                workers[i]->open(reinterpret_cast<const sockaddr*>(&startup.listen), spread_over);
            if (!errors[i].empty()) return false;
            workers[i]->start_receiving();
            return true;
        },
        [&](std::size_t i) {
            if (workers[i]) workers[i]->drain_and_close(inflight_ms);
        });
    if (!ok) {
        for (const std::string& e : errors)
            if (!e.empty()) die(program, e);
        die(program, "a worker failed to start");
    }
    spdlog::info(
        "listening on {} {} with {} workers (--spread {}), metrics on "
        "http://{}/metrics, Redis {}",
        common.tcp ? "udp and tcp" : "udp", common.listen, n, common.spread, common.metrics,
        location::redacted(startup.redis.target));
    // Only once serving: a start-up error stays the only line on stderr.
    if (common.rate_limit != 0 && !startup.allow.empty())
        spdlog::warn(
            "--rate-limit does not apply: every source accepted is in --allow, and "
            "sources in --allow are exempt from it");
    if (common.secret.empty())
        spdlog::warn(
            "no --secret / SIPR_SECRET: using the built-in To-tag key; set one secret on "
            "every instance of a deployment (tags stay consistent, but guessable)");

    int sig = wait_for_signal();
    if (sig == SIGTERM && drain_seconds > 0) {
        // Graceful drain: the balancer's probe sees 503 and takes this instance out while it
        // still answers whatever reaches it; only then do we stop.
        spdlog::info(
            "SIGTERM: draining for {} s (health probe answers 503, requests are still "
            "answered); SIGTERM or SIGINT again stops at once",
            drain_seconds);
        for (unsigned i = 0; i < n; ++i) {
            Worker* w = workers[i].get();
            group.post(i, [w] { w->begin_drain(); });
        }
        sig = wait_for_signal_for(uint64_t{drain_seconds} * 1000u);
        if (sig != 0)
            spdlog::info("signal {} while draining: stopping at once", sig);
        else
            spdlog::info("drained for {} s", drain_seconds);
    }
    spdlog::info("signal {}: answering what is in flight and stopping", sig != 0 ? sig : SIGTERM);
    group.stop();
    workers.clear();
    spdlog::info("stopped");
    return 0;
}

}  // namespace sipr::app
