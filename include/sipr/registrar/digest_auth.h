#pragma once
// Digest authentication of REGISTER (DESIGN §5; RFC 3261 §22, RFC 7616, RFC 8760): the
// Authenticator of sip-registrard --auth digest. Pure logic against the AuthStore interface, so it
// is unit-tested with a fake store and a fake clock.
//
// The algorithms are per subscriber: the record's "algorithms" field (sip-locctl user add
// --algorithms SHA-256,MD5), else the configured default (--auth-algorithms, MD5 alone unless set:
// common UAs such as baresip 1.0 give up on a 401 that offers SHA-256 at all, even beside MD5).
// A REGISTER without credentials for our realm costs one store read (the subscriber's list) and
// gets a 401 with one WWW-Authenticate per algorithm of that list, most preferred first,
// qop="auth" and a stateless nonce (digest.h); an unknown user gets the default list. With
// credentials, the checks that need no store come first (the username must be the To AOR's user
// part, else 403; SHA-256 or MD5, qop=auth, a well-formed nc; a uri equivalent to the
// Request-URI, else 400; a nonce of ours for this realm). Then one store read gives the subscriber
// and its recent failures: locked out or disabled -> 403; an algorithm outside the subscriber's
// list cannot succeed; the response is compared in constant time; a wrong one is counted towards
// the lock-out and re-challenged (401); a right one on an expired nonce gets 401 with stale=true;
// a right one on a fresh nonce must carry a nonce-count above every one seen with that nonce (kept
// in the store, so across instances), else it is a replay (401) -- unless it is byte for byte the
// request that nc was accepted for, within 64*T1 of then: a retransmission after a lost 200,
// answered as the first time (Verdict::Retransmission: the registrar writes nothing new).
// Successes are counted by algorithm (RegistrarStats::auth_successes).
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/base/op_pool.h"
#include "sipr/location/auth_store.h"
#include "sipr/registrar/digest.h"
#include "sipr/registrar/registrar.h"
#include "sipr/sip/headers.h"
#include "sipr/sip/intake.h"

namespace sipr::registrar {

struct DigestConfig {
    std::string realm;  // --realm; "" challenges each AOR in its own domain
    // The algorithms of a subscriber whose record names none (and of an unknown user), in the
    // order of the challenges (RFC 8760 §2.4: most preferred first). MD5 alone by default: every
    // common UA answers it, and some refuse a 401 that offers SHA-256 at all.
    std::vector<DigestAlgorithm> algorithms{DigestAlgorithm::Md5};
    std::string nonce_secret;             // shared by every registrar instance
    uint32_t nonce_lifetime_s = 300;      // older nonces get stale=true
    uint32_t max_clock_skew_s = 30;       // a nonce issued further in the future is not ours
    location::AuthFailurePolicy lockout;  // limit 0: no lock-out
    // A request carrying an nc already accepted is still a retransmission (answered as the first
    // time, not as a replay) when it is byte for byte that request and arrives within this long
    // of its first acceptance: 64*T1, RFC 3261 §17.1.2.2 Timer F, how long a UA retransmits.
    uint32_t retransmission_window_ms = 64 * 500;
    // Unix milliseconds; empty: the system clock. Tests set a fake clock.
    std::function<int64_t()> clock_ms;
    // Compares the expected response with the client's. Always digests_equal (constant time) in
    // the product; a seam so that tests can see it is the comparison used.
    bool (*equal)(std::string_view expected, std::string_view given) noexcept = &digests_equal;
};

class DigestAuthenticator final : public Authenticator {
  public:
    // `store` is not owned and must outlive the authenticator; `stats` is this worker's (its store
    // errors are counted there; the registrar counts the failures).
    DigestAuthenticator(DigestConfig config, location::AuthStore& store, RegistrarStats& stats);
    ~DigestAuthenticator() override;
    DigestAuthenticator(const DigestAuthenticator&) = delete;
    DigestAuthenticator& operator=(const DigestAuthenticator&) = delete;

    Verdict check(const sip::Message& msg, const sip::RequestCore& core, std::string_view bytes,
                  const sip::Peer& from, std::string_view aor, std::string& extra_headers,
                  Done done, void* ctx) noexcept override;

    // Checks waiting for the store.
    [[nodiscard]] std::size_t pending() const noexcept { return pending_; }
    [[nodiscard]] const DigestConfig& config() const noexcept { return config_; }

  private:
    struct Op;
    static void on_fetched(void* ctx, const location::AuthFetchReply& reply) noexcept;
    static void on_failure_counted(void* ctx, const location::AuthFailureReply& reply) noexcept;
    static void on_nonce_count(void* ctx, const location::NonceCountReply& reply) noexcept;
    // A free op, reset, with the default algorithms and the request's callback, AOR, realm,
    // method and source filled in; never nullptr (one is made when none is free).
    Op* take_op(const sip::Message& msg, const sip::Peer& from, std::string_view aor,
                std::string_view realm, std::string& extra, Done done, void* ctx) noexcept;
    // Reads the subscriber only to challenge it with its algorithms: the answer is `verdict`.
    Verdict fetch(const sip::Message& msg, const sip::Peer& from, std::string_view aor,
                  std::string_view realm, std::string& extra, Done done, void* ctx,
                  Verdict verdict) noexcept;
    // Asks the store for `op`'s subscriber (on_fetched then runs): Pending, or Unavailable with
    // the op given back.
    Verdict start_fetch(Op* op) noexcept;
    // Writes the challenge into the op's headers (for Challenge and Reject), frees the op and
    // calls its `done`.
    void complete(Op* op, Verdict verdict, bool stale = false) noexcept;
    // One WWW-Authenticate line per algorithm of `algorithms`, sharing one fresh nonce, into
    // `out`. False when it could not be written (the caller answers 503).
    bool write_challenge(std::string& out, std::string_view realm, bool stale,
                         const AlgorithmList& algorithms) noexcept;
    // The algorithms of a subscriber record: its own list, else the configured default. An
    // "algorithms" field naming no algorithm we know gives an empty list (nothing succeeds).
    [[nodiscard]] AlgorithmList algorithms_of(const location::Credentials& c) const noexcept;
    void count_store_error(location::StoreError e) noexcept;
    [[nodiscard]] uint32_t now_s() const noexcept;
    [[nodiscard]] int64_t now_ms() const noexcept;

    DigestConfig config_;
    AlgorithmList default_algorithms_;  // config_.algorithms
    location::AuthStore& store_;
    RegistrarStats& stats_;
    DigestHasher hasher_;
    HmacSha256 nonce_key_;
    uint64_t nonce_counter_ = 0;  // only if the system's random source fails
    base::OpPool<Op> ops_;
    std::size_t pending_ = 0;
};

// The user part of a normalised AOR ("alice" of "sip:alice@example.com"; "" when it has none) and
// its domain ("example.com"). The user part may itself hold an escaped '@': the last one splits.
[[nodiscard]] std::string_view aor_user(std::string_view aor) noexcept;
[[nodiscard]] std::string_view aor_domain(std::string_view aor) noexcept;

// The source a failed authentication is counted against (the lock-out is per AOR and source, so a
// guesser cannot lock the subscriber's other devices out): the IPv4 address, or for IPv6 the /64
// ("2001:db8:1:2::/64": one host commonly holds a whole /64); an IPv4-mapped IPv6 address counts
// as its IPv4 address. Written into `out`; returns the view of it ("" for a peer of no family).
inline constexpr std::size_t kAuthSourceLength = 64;
[[nodiscard]] std::string_view auth_source(const sip::Peer& from,
                                           std::span<char, kAuthSourceLength> out) noexcept;

}  // namespace sipr::registrar
