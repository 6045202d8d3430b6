// sip-registrard: the companion registrar (DESIGN §2, §5, §8).
#include <memory>
#include <optional>
#include <vector>

#include "common.h"
#include "sipr/base/ascii.h"
#include "sipr/registrar/digest_auth.h"
#include "sipr/registrar/registrar.h"

namespace {

using namespace sipr;

class RegistrarService final : public app::Service {
  public:
    RegistrarService(const registrar::Config& config,
                     const std::optional<registrar::DigestConfig>& digest, app::Worker& worker)
        : registrar_(config, worker.backend().registrations(), worker, worker.stats().messages,
                     worker.stats().registrar) {
        if (digest) {
            auth_ = std::make_unique<registrar::DigestAuthenticator>(
                *digest, worker.backend().auth(), worker.stats().registrar);
            registrar_.set_authenticator(auth_.get());
        }
    }

    void handle(std::string_view bytes, const sip::Peer& from, bool trusted) noexcept override {
        registrar_.on_datagram(bytes, from, trusted);
    }
    // A REGISTER that waits for the authenticator or the store is counted in pending() until its
    // answer is sent: one more after the call means the answer is still to come.
    bool handle_stream(std::string_view bytes, const sip::Peer& from) noexcept override {
        const std::size_t before = registrar_.pending();
        registrar_.on_datagram(bytes, from, true);
        return registrar_.pending() > before;
    }
    std::size_t pending() const noexcept override { return registrar_.pending(); }

  private:
    registrar::Registrar registrar_;
    std::unique_ptr<registrar::DigestAuthenticator> auth_;  // --auth digest
};

// --auth-algorithms: names in challenge order, each once.
std::vector<registrar::DigestAlgorithm> parse_algorithms(const std::string& program,
                                                         const std::vector<std::string>& names) {
    std::vector<registrar::DigestAlgorithm> out;
    for (const std::string& n : names) {
        registrar::DigestAlgorithm a;
        if (n.empty() || !registrar::parse_algorithm(n, a))
            app::die(program, "--auth-algorithms: '" + n + "' is not SHA-256 or MD5");
        for (registrar::DigestAlgorithm o : out)
            if (o == a) app::die(program, "--auth-algorithms: " + n + " is listed twice");
        out.push_back(a);
    }
    if (out.empty()) app::die(program, "--auth-algorithms: name at least one of SHA-256, MD5");
    return out;
}

int run(int argc, char** argv) {
    const std::string program = "sip-registrard";
    CLI::App cli{"sip-registrard: SIP registrar storing contact bindings in Redis (RFC 3261 §10.3)",
                 program};
    app::CommonFlags common;
    common.listen = "127.0.0.1:5060";
    common.metrics = "127.0.0.1:9060";
    app::add_common_flags(cli, common);
    app::add_stream_flags(cli, common);
    registrar::Config config;
    std::string auth = "none", realm, policy = "reject";
    cli.add_option("--auth", auth, "authentication: none or digest")
        ->envname("SIPR_AUTH")
        ->check(CLI::IsMember({"none", "digest"}))
        ->capture_default_str();
    cli.add_option("--realm", realm, "digest realm (default: the AOR's domain)")
        ->envname("SIPR_REALM");
    std::vector<std::string> algorithms{"MD5"};
    cli.add_option("--auth-algorithms", algorithms,
                   "digest algorithms of a subscriber whose record names none (sip-locctl user "
                   "add --algorithms), one challenge each, in this order")
        ->envname("SIPR_AUTH_ALGORITHMS")
        ->delimiter(',')
        ->capture_default_str();
    std::string nonce_secret;
    cli.add_option("--nonce-secret", nonce_secret,
                   "key of the digest nonces, shared by all registrars (default: --secret)")
        ->envname("SIPR_NONCE_SECRET");
    uint32_t nonce_lifetime = 300, fail_limit = 5, cooldown = 60;
    cli.add_option("--nonce-lifetime", nonce_lifetime,
                   "seconds a nonce is accepted (then stale=true)")
        ->envname("SIPR_NONCE_LIFETIME")
        ->check(CLI::Range(1u, 86400u))
        ->capture_default_str();
    cli.add_option("--auth-fail-limit", fail_limit,
                   "failed authentications per AOR and source per minute before the cool-down "
                   "(0: no limit)")
        ->envname("SIPR_AUTH_FAIL_LIMIT")
        ->check(CLI::Range(0u, 1000000u))
        ->capture_default_str();
    cli.add_option("--auth-cooldown", cooldown,
                   "seconds a source is refused (403) for an AOR after the limit")
        ->envname("SIPR_AUTH_COOLDOWN")
        ->check(CLI::Range(1u, 86400u))
        ->capture_default_str();
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
    cli.add_option("--max-contacts-policy", policy,
                   "beyond --max-contacts: reject (403) or evict the oldest")
        ->envname("SIPR_MAX_CONTACTS_POLICY")
        ->check(CLI::IsMember({"reject", "evict"}))
        ->capture_default_str();
    std::string events = "on";
    cli.add_option("--events", events,
                   "registration events and counts (README \"Registration events and counts\"): "
                   "on, or off (no events, no sipr_registered_* gauges, no expiry sweep)")
        ->envname("SIPR_EVENTS")
        ->check(CLI::IsMember({"on", "off"}))
        ->capture_default_str();
    app::parse_or_exit(cli, argc, argv);
    app::setup_logging(program, common.log_level);

    std::optional<registrar::DigestConfig> digest;
    if (auth == "digest") {
        digest.emplace();
        digest->algorithms = parse_algorithms(program, algorithms);
        for (char c : realm)
            if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
                app::die(program,
                         "--realm must not hold quotes, backslashes or control characters");
        digest->realm = realm;
        // Every registrar instance must verify every other's nonces: the key cannot be made up
        // here, and a built-in one would let anyone mint nonces.
        digest->nonce_secret = nonce_secret.empty() ? common.secret : nonce_secret;
        if (digest->nonce_secret.empty())
            app::die(program,
                     "--auth digest needs a secret shared by every registrar instance: "
                     "set SIPR_SECRET (or --nonce-secret / SIPR_NONCE_SECRET)");
        digest->nonce_lifetime_s = nonce_lifetime;
        digest->lockout.limit = fail_limit;
        digest->lockout.cooldown_s = cooldown;
        digest->lockout.window_s = 60;  // "per minute"
        if (!registrar::DigestHasher().ok())
            app::die(program,
                     "OpenSSL offers no MD5 or SHA-256 here (FIPS mode?); use --auth none");
    }
    if (config.min_expires > config.max_expires)
        app::die(program, "--min-expires must not exceed --max-expires");
    if (config.default_expires < config.min_expires || config.default_expires > config.max_expires)
        app::die(program, "--default-expires must lie between --min-expires and --max-expires");
    config.evict_oldest = policy == "evict";
    config.max_response = common.max_response;
    config.max_response_stream = common.max_response_stream;
    common.stream_max_message = config.max_message;
    config.max_amplification = common.max_amplification;
    for (std::string& d : common.domains)
        for (char& c : d) c = base::to_lower(c);
    config.domains = common.domains;

    app::Startup startup = app::check_startup(program, common);
    config.tag_key = app::tag_key(common.secret);
    location::BackendOptions bopts;
    bopts.redis.connect_timeout_ms = common.redis_timeout_ms;
    bopts.redis.command_timeout_ms = common.redis_timeout_ms;
    bopts.housekeeping = true;
    bopts.events = events == "on";
    return app::serve(
        program, common, startup, bopts,
        [&](app::Worker& w) -> std::unique_ptr<app::Service> {
            return std::make_unique<RegistrarService>(config, digest, w);
        },
        2000);
}

}  // namespace

int main(int argc, char** argv) {
    return sipr::app::guarded_main("sip-registrard", run, argc, argv);
}
