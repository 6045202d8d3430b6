// sip-registrard: the companion registrar (DESIGN §2, §5, §8).
#include <memory>
#include <vector>

#include "common.h"
#include "sipr/base/ascii.h"
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

    app::Startup startup = app::check_startup(program, common);
    config.tag_key = app::tag_key(common.secret);
    location::RedisOptions ropts;
    ropts.connect_timeout_ms = common.redis_timeout_ms;
    ropts.command_timeout_ms = common.redis_timeout_ms;
    return app::serve(
        program, common, startup,
        [&](std::size_t i, uv_loop_t* loop, base::ServiceStats& stats) -> std::unique_ptr<app::Worker> {
            return std::make_unique<RegistrarWorker>(i, loop, startup.redis, ropts, stats, config);
        },
        2000);
}
