// sip-registrard: the companion registrar (DESIGN §2, §5, §8).
#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include "common.h"
#include "sipr/base/ascii.h"
#include "sipr/metrics/exporter.h"
#include "sipr/net/endpoint.h"
#include "sipr/net/worker_group.h"
#include "sipr/registrar/registrar.h"

namespace {

using namespace sipr;

class RegistrarWorker final : public app::Worker {
public:
    RegistrarWorker(std::size_t index, uv_loop_t* loop, const location::RedisUrl& url,
                    const location::RedisOptions& ropts, base::ServiceStats& stats,
                    const registrar::Config& config)
        : Worker(index, loop, url, ropts, stats), registrar_(config, store(), *this, stats) {}

protected:
    void handle(std::string_view bytes, const sip::Peer& from) noexcept override {
        registrar_.on_datagram(bytes, from);
    }
    std::size_t pending() const noexcept override { return registrar_.pending(); }

private:
    registrar::Registrar registrar_;
};

}  // namespace

int main(int argc, char** argv) {
    const std::string program = "sip-registrard";
    CLI::App cli{"sip-registrard: SIP registrar storing contact bindings in Redis (RFC 3261 §10.3)",
                 program};
    app::CommonFlags common;
    common.listen = "127.0.0.1:5060";
    common.metrics = "127.0.0.1:9060";
    app::add_common_flags(cli, common);
    registrar::Config config;
    std::string auth = "none", realm, policy = "reject";
    cli.add_option("--auth", auth, "authentication: none or digest")
        ->envname("SIPR_AUTH")
        ->check(CLI::IsMember({"none", "digest"}))
        ->capture_default_str();
    cli.add_option("--realm", realm, "digest realm (default: the AOR's domain)")->envname("SIPR_REALM");
    cli.add_option("--min-expires", config.min_expires, "shortest accepted expiry, s (else 423)")
        ->envname("SIPR_MIN_EXPIRES")
        ->capture_default_str();
    cli.add_option("--max-expires", config.max_expires, "longer expiries are clamped to this, s")
        ->envname("SIPR_MAX_EXPIRES")
        ->capture_default_str();
    cli.add_option("--default-expires", config.default_expires,
                   "expiry when the REGISTER gives none, s")
        ->envname("SIPR_DEFAULT_EXPIRES")
        ->capture_default_str();
    cli.add_option("--max-contacts", config.max_contacts, "bindings per AOR")
        ->envname("SIPR_MAX_CONTACTS")
        ->check(CLI::Range(1u, 100000u))
        ->capture_default_str();
    cli.add_option("--max-contacts-policy", policy, "beyond --max-contacts: reject (403) or evict the oldest")
        ->envname("SIPR_MAX_CONTACTS_POLICY")
        ->check(CLI::IsMember({"reject", "evict"}))
        ->capture_default_str();
    app::parse_or_exit(cli, argc, argv);
    app::setup_logging(program, common.log_level);

    if (auth == "digest")
        app::die(program, "--auth digest is not available in this build yet; use --auth none");
    if (config.min_expires > config.max_expires)
        app::die(program, "--min-expires must not exceed --max-expires");
    if (config.default_expires < config.min_expires || config.default_expires > config.max_expires)
        app::die(program, "--default-expires must lie between --min-expires and --max-expires");
    config.evict_oldest = policy == "evict";
    for (std::string& d : common.domains)
        for (char& c : d) c = base::to_lower(c);
    config.domains = common.domains;

    sockaddr_storage listen{};
    if (!net::parse_endpoint(common.listen, listen))
        app::die(program, "--listen '" + common.listen + "' is not host:port (e.g. 127.0.0.1:5060)");
    location::RedisUrl url;
    std::string err;
    if (!location::parse_redis_url(common.redis, url, err)) app::die(program, err);
    if (std::string why = app::check_redis(url, common.redis_timeout_ms); !why.empty())
        app::die(program, why);

    // After every start-up check, so an error stays the only line on stderr.
    config.tag_key = app::tag_key(common.secret, program);

    unsigned n = common.workers != 0 ? common.workers : std::max(1u, std::thread::hardware_concurrency());
    location::RedisOptions ropts;
    ropts.connect_timeout_ms = common.redis_timeout_ms;
    ropts.command_timeout_ms = common.redis_timeout_ms;

    app::block_signals();
    std::vector<std::unique_ptr<base::ServiceStats>> stats;
    std::vector<const base::ServiceStats*> stat_ptrs;
    for (unsigned i = 0; i < n; ++i) {
        stats.push_back(std::make_unique<base::ServiceStats>());
        stat_ptrs.push_back(stats.back().get());
    }
    std::unique_ptr<metrics::Exporter> exporter;
    try {
        exporter = std::make_unique<metrics::Exporter>(common.metrics, program, stat_ptrs);
    } catch (const std::exception& e) {
        app::die(program, std::string(e.what()) + " (choose another with --metrics)");
    }

    std::vector<std::unique_ptr<RegistrarWorker>> workers(n);
    std::vector<std::string> errors(n);
    net::WorkerGroup group;
    bool ok = group.start(
        n,
        [&](std::size_t i, uv_loop_t* loop) {
            workers[i] = std::make_unique<RegistrarWorker>(i, loop, url, ropts, *stats[i], config);
            errors[i] = workers[i]->open(reinterpret_cast<const sockaddr*>(&listen));
            if (!errors[i].empty()) return false;
            workers[i]->start_receiving();
            return true;
        },
        [&](std::size_t i) {
            if (workers[i]) workers[i]->drain_and_close(2000);
        });
    if (!ok) {
        for (const std::string& e : errors)
            if (!e.empty()) app::die(program, e);
        app::die(program, "a worker failed to start");
    }
    spdlog::info("listening on udp {} with {} workers, metrics on http://{}/metrics, Redis {}",
                 common.listen, n, common.metrics, location::redacted(url));

    int sig = app::wait_for_signal();
    spdlog::info("signal {}: finishing in-flight registrations and stopping", sig);
    group.stop();
    workers.clear();
    spdlog::info("stopped");
    return 0;
}
