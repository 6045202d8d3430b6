// sip-redirectd: the stateless redirect front end (DESIGN §2, §4, §7, §8).
#include <time.h>

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

class RedirectWorker final : public app::Worker {
public:
    RedirectWorker(std::size_t index, uv_loop_t* loop, const location::RedisUrl& url,
                   const location::RedisOptions& ropts, base::ServiceStats& stats,
                   const redirect::Config& config)
        : Worker(index, loop, url, ropts, stats),
          redirector_(config, store(), *this, stats, &monotonic_us, &location::system_clock_ms) {}

protected:
    void handle(std::string_view bytes, const sip::Peer& from) noexcept override {
        redirector_.on_datagram(bytes, from);
    }
    std::size_t pending() const noexcept override { return redirector_.inflight(); }

private:
    redirect::Redirector redirector_;
};

}  // namespace

int main(int argc, char** argv) {
    const std::string program = "sip-redirectd";
    CLI::App cli{"sip-redirectd: stateless SIP redirect server answering 302 from Redis bindings",
                 program};
    app::CommonFlags common;
    common.listen = "127.0.0.1:5070";
    common.metrics = "127.0.0.1:9070";
    app::add_common_flags(cli, common);
    redirect::Config config;
    uint32_t lookup_timeout_ms = 200;
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
    cli.add_option("--max-response", config.max_response,
                   "largest 302, bytes; contacts beyond are cut, lowest q first")
        ->envname("SIPR_MAX_RESPONSE")
        ->check(CLI::Range(std::size_t{512}, std::size_t{65000}))
        ->capture_default_str();
    cli.add_option("--max-message", config.max_message, "largest request, bytes; beyond: 513")
        ->envname("SIPR_MAX_MESSAGE")
        ->check(CLI::Range(std::size_t{1024}, std::size_t{65535}))
        ->capture_default_str();
    app::parse_or_exit(cli, argc, argv);
    app::setup_logging(program, common.log_level);

    config.reject_max_forwards_zero = max_forwards_zero == "reject";
    for (std::string& d : common.domains)
        for (char& c : d) c = base::to_lower(c);
    config.domains = common.domains;
    if (config.default_domain.empty() && !config.domains.empty())
        config.default_domain = config.domains.front();

    app::Startup startup = app::check_startup(program, common);
    config.tag_key = app::tag_key(common.secret);
    location::RedisOptions ropts;
    ropts.connect_timeout_ms = common.redis_timeout_ms;
    ropts.command_timeout_ms = lookup_timeout_ms;
    ropts.max_pending = static_cast<uint32_t>(config.max_inflight);
    return app::serve(
        program, common, startup,
        [&](std::size_t i, uv_loop_t* loop, base::ServiceStats& stats) -> std::unique_ptr<app::Worker> {
            return std::make_unique<RedirectWorker>(i, loop, startup.redis, ropts, stats, config);
        },
        lookup_timeout_ms + 100);
}
