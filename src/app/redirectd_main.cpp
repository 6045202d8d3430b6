// sip-redirectd: the stateless redirect front end (DESIGN §2, §4, §7, §8).
#include <ctime>

#include <algorithm>
#include <memory>
#include <vector>

#include "common.h"
#include "sipr/base/ascii.h"
#include "sipr/redirect/redirect.h"

namespace {

using namespace sipr;

uint64_t monotonic_us() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

class RedirectService final : public app::Service {
  public:
    RedirectService(const redirect::Config& config, app::Worker& worker)
        : redirector_(config, worker.backend().lookups(), worker, worker.stats().messages,
                      worker.stats().redirect, &monotonic_us, &location::system_clock_ms) {}

    void handle(std::string_view bytes, const sip::Peer& from, bool trusted) noexcept override {
        (void)redirector_.on_datagram(bytes, from, trusted);
    }
    bool handle_stream(std::string_view bytes, const sip::Peer& from) noexcept override {
        return redirector_.on_datagram(bytes, from, true);
    }
    bool reject(std::string_view head, const sip::Peer& from, uint16_t status,
                std::string_view reason) noexcept override {
        return redirector_.reject(head, from, status, reason);
    }
    std::size_t pending() const noexcept override { return redirector_.inflight(); }
    void on_drain() noexcept override { redirector_.set_draining(true); }

  private:
    redirect::Redirector redirector_;
};

int run(int argc, char** argv) {
    const std::string program = "sip-redirectd";
    CLI::App cli{"sip-redirectd: stateless SIP redirect server answering 302 from Redis bindings",
                 program};
    app::CommonFlags common;
    common.listen = "127.0.0.1:5070";
    common.metrics = "127.0.0.1:9070";
    app::add_common_flags(cli, common);
    app::add_stream_flags(cli, common);
    redirect::Config config;
    uint32_t lookup_timeout_ms = 200;
    cli.add_option("--redis-read", common.redis_read,
                   "send look-ups to this Redis (a replica of --redis, redis://...); while it is "
                   "unreachable they go to --redis. Not with cluster://")
        ->envname("SIPR_REDIS_READ");
    std::string max_forwards_zero = "reject";
    cli.add_option("--lookup-timeout", lookup_timeout_ms,
                   "Redis look-up deadline, ms; later answers are 503")
        ->envname("SIPR_LOOKUP_TIMEOUT")
        ->check(CLI::Range(1u, 60000u))
        ->capture_default_str();
    cli.add_option("--max-inflight", config.max_inflight,
                   "look-ups in flight per worker; beyond: 503 at once")
        ->envname("SIPR_MAX_INFLIGHT")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}))
        ->capture_default_str();
    cli.add_option("--default-domain", config.default_domain,
                   "domain for tel: Request-URIs (default: the first --domain)")
        ->envname("SIPR_DEFAULT_DOMAIN");
    cli.add_flag("--path-route", config.path_as_route,
                 "return a binding's Path as ?Route= in its Contact (RFC 3327)")
        ->envname("SIPR_PATH_ROUTE");
    cli.add_flag("--health-ignores-redis", config.health_ignores_redis,
                 "answer the OPTIONS health probe 200 even while Redis is unreachable")
        ->envname("SIPR_HEALTH_IGNORES_REDIS");
    cli.add_option("--max-forwards-zero", max_forwards_zero,
                   "a request with Max-Forwards: 0: reject (483) or redirect")
        ->envname("SIPR_MAX_FORWARDS_ZERO")
        ->check(CLI::IsMember({"reject", "redirect"}))
        ->capture_default_str();
    cli.add_option("--max-message", config.max_message, "largest request, bytes; beyond: 513")
        ->envname("SIPR_MAX_MESSAGE")
        ->check(CLI::Range(std::size_t{1024}, std::size_t{65535}))
        ->capture_default_str();
    // Near-cache (DESIGN §7). A negative entry (404) lives 1 s by default: it is invalidated
    // like any other (Redis tracks a key read while absent), but 404 traffic is largely one-off
    // (scanners, mistyped numbers), so short-lived 404 entries leave the room to hot AORs, and a
    // phone's first REGISTER after boot is seen within 1 s even if an invalidation were lost.
    // On by default (DESIGN §7), in every Redis topology: look-ups answered from the worker's
    // memory cost no Redis round trip (bench/RESULTS.md). The TTL only bounds how long a hot AOR
    // stays without a Redis read; correctness comes from invalidation, not from the TTL.
    uint32_t cache_ttl_ms = 60000;
    uint32_t cache_negative_ttl_ms = 1000;
    uint32_t cache_max_entries = 100000;
    cli.add_option("--cache-ttl", cache_ttl_ms,
                   "near-cache: keep an AOR's bindings this long, ms (0: no cache, every look-up "
                   "asks Redis); changes in Redis are seen within milliseconds regardless "
                   "(CLIENT TRACKING, on every node of a cluster://)")
        ->envname("SIPR_CACHE_TTL")
        ->check(CLI::Range(0u, 86400000u))
        ->capture_default_str();
    cli.add_option("--cache-negative-ttl", cache_negative_ttl_ms,
                   "near-cache: keep a 404 (no live binding) this long, ms (at most --cache-ttl; "
                   "0: never cache 404)")
        ->envname("SIPR_CACHE_NEGATIVE_TTL")
        ->check(CLI::Range(0u, 86400000u))
        ->capture_default_str();
    cli.add_option("--cache-max-entries", cache_max_entries,
                   "near-cache: AORs held by the instance in all, split evenly over the workers "
                   "(each worker caches what it reads); beyond, the least recently used go (CLOCK)")
        ->envname("SIPR_CACHE_MAX_ENTRIES")
        ->check(CLI::Range(1u, 100000000u))
        ->capture_default_str();
    // Redis keeps one tracking-table entry per distinct key a caching connection read (about
    // 130 bytes, plus about 47 per further worker that read it: bench/RESULTS.md), until the key
    // changes or the table is full; 404 look-ups for random AORs count too. The node's default
    // is 1,000,000 (~130 MB) and 0 is unbounded: sip-redirectd holds it to this bound (CONFIG
    // SET, checked at start and on every reconnect). A key Redis drops from a full table is
    // invalidated, so a small bound costs hits, never correctness.
    uint64_t cache_tracking_max_keys = 100000;
    cli.add_option("--cache-tracking-max-keys", cache_tracking_max_keys,
                   "near-cache: the most keys Redis may track for invalidation (its "
                   "tracking-table-max-keys, shared by every client of that node): checked at "
                   "start and on every reconnect, and set (CONFIG SET) when Redis allows more or "
                   "no limit; if Redis refuses, the daemon does not start (and a reconnected "
                   "worker runs without its cache). About 130 bytes of Redis memory per key, "
                   "plus 47 per further worker that read it")
        ->envname("SIPR_CACHE_TRACKING_MAX_KEYS")
        ->check(CLI::Range(uint64_t{1}, uint64_t{100000000}))
        ->capture_default_str();
    // Graceful drain (SIGTERM): set it above the balancer's time to take out an instance whose
    // probe fails (Kamailio's dispatcher: ping interval times probing threshold; 2 s x 2 in
    // deploy/kamailio-lb), so no request reaches the instance once it has stopped.
    uint32_t drain_seconds = 5;
    cli.add_option("--drain-seconds", drain_seconds,
                   "on SIGTERM, answer the health probe (OPTIONS to the server) 503 for this long "
                   "while still answering requests, then stop; 0: stop at once. A second SIGTERM, "
                   "or SIGINT, stops at once")
        ->envname("SIPR_DRAIN_SECONDS")
        ->check(CLI::Range(0u, 3600u))
        ->capture_default_str();
    app::parse_or_exit(cli, argc, argv);
    app::setup_logging(program, common.log_level);

    config.max_response = common.max_response;
    config.max_response_stream = common.max_response_stream;
    common.stream_max_message = config.max_message;
    config.max_amplification = common.max_amplification;
    config.reject_max_forwards_zero = max_forwards_zero == "reject";
    for (std::string& d : common.domains)
        for (char& c : d) c = base::to_lower(c);
    config.domains = common.domains;
    if (config.default_domain.empty() && !config.domains.empty())
        config.default_domain = config.domains.front();

    app::Startup startup = app::check_startup(program, common);
    config.tag_key = app::tag_key(common.secret);
    location::BackendOptions bopts;
    bopts.redis.connect_timeout_ms = common.redis_timeout_ms;
    bopts.redis.command_timeout_ms = lookup_timeout_ms;
    bopts.redis.max_pending = static_cast<uint32_t>(config.max_inflight);
    location::NearCacheOptions& cache = bopts.cache;
    if (cache_ttl_ms != 0) {
        cache.ttl_ms = cache_ttl_ms;
        cache.negative_ttl_ms = std::min(cache_negative_ttl_ms, cache_ttl_ms);
        cache.max_entries = (cache_max_entries + startup.workers - 1) / startup.workers;
        cache.tracking_max_keys = cache_tracking_max_keys;
        // The node the tracked reads go to: the replica of --redis-read, else the primary (with
        // cluster://, the first seed here; every node's tracker checks its own on connecting).
        const location::RedisUrl& tracked =
            startup.redis.has_read ? startup.redis.read : startup.redis.primary;
        std::string note;
        if (std::string why = location::bound_tracking_table(tracked, cache_tracking_max_keys,
                                                             common.redis_timeout_ms, note);
            !why.empty())
            app::die(program, why);
        if (!note.empty()) spdlog::info("{}", note);
    }
    return app::serve(
        program, common, startup, bopts,
        [&](app::Worker& w) -> std::unique_ptr<app::Service> {
            return std::make_unique<RedirectService>(config, w);
        },
        lookup_timeout_ms + 100, drain_seconds);
}

}  // namespace

int main(int argc, char** argv) {
    return sipr::app::guarded_main("sip-redirectd", run, argc, argv);
}
