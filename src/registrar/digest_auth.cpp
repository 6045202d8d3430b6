#include "sipr/registrar/digest_auth.h"

#include <openssl/rand.h>

#include <array>
#include <chrono>
#include <cstring>

#include "sipr/base/ascii.h"

namespace sipr::registrar {

using location::StoreError;

std::string_view aor_user(std::string_view aor) noexcept {
    std::size_t colon = aor.find(':');
    std::size_t at = aor.rfind('@');
    if (colon == std::string_view::npos || at == std::string_view::npos || at < colon) return {};
    return aor.substr(colon + 1, at - colon - 1);
}

std::string_view aor_domain(std::string_view aor) noexcept {
    std::size_t at = aor.rfind('@');
    if (at != std::string_view::npos) return aor.substr(at + 1);
    std::size_t colon = aor.find(':');
    return colon == std::string_view::npos ? aor : aor.substr(colon + 1);
}

// One check waiting for the store. Every view points into the registrar's slot (the REGISTER)
// or into the configuration, both valid until `done` has run.
struct DigestAuthenticator::Op {
    DigestAuthenticator* owner = nullptr;
    Done done = nullptr;
    void* ctx = nullptr;
    std::string* extra = nullptr;
    std::string_view aor;
    std::string_view realm;
    std::string_view method;
    sip::DigestCredentials cred;
    DigestAlgorithm algorithm = DigestAlgorithm::Sha256;
    AlgorithmList algorithms;  // the challenge's: the default until the subscriber is read
    uint32_t nc = 0;
    uint32_t issued_s = 0;
    bool stale = false;
    // Only the subscriber's algorithms are wanted: the answer is `verdict` with a challenge.
    bool challenge_only = false;
    Verdict verdict = Verdict::Challenge;
};

static_assert(static_cast<std::size_t>(DigestAlgorithm::Md5) == 0 &&
                  static_cast<std::size_t>(DigestAlgorithm::Sha256) == 1 &&
                  base::kAuthAlgorithmNames.size() == 2,
              "ServiceStats::auth_successes is indexed by DigestAlgorithm");

DigestAuthenticator::DigestAuthenticator(DigestConfig config, location::AuthStore& store,
                                         base::ServiceStats& stats)
    : config_(std::move(config)), store_(store), stats_(stats), nonce_key_(config_.nonce_secret) {
    if (config_.algorithms.empty()) config_.algorithms = {DigestAlgorithm::Md5};
    for (DigestAlgorithm a : config_.algorithms) default_algorithms_.add(a);
}

DigestAuthenticator::~DigestAuthenticator() = default;

uint32_t DigestAuthenticator::now_s() const noexcept {
    int64_t ms;
    if (config_.clock_ms) {
        ms = config_.clock_ms();
    } else {
        using namespace std::chrono;
        ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
    }
    return ms <= 0 ? 0 : static_cast<uint32_t>(ms / 1000);
}

AlgorithmList DigestAuthenticator::algorithms_of(const location::Credentials& c) const noexcept {
    if (!c.found || c.algorithms.empty()) return default_algorithms_;
    AlgorithmList own;
    parse_algorithm_list(c.algorithms, own);
    return own;
}

void DigestAuthenticator::count_store_error(StoreError e) noexcept {
    stats_.redis_error(e == StoreError::Timeout      ? base::RedisErrorKind::Timeout
                       : e == StoreError::Overloaded ? base::RedisErrorKind::Overloaded
                       : e == StoreError::Protocol   ? base::RedisErrorKind::Protocol
                                                     : base::RedisErrorKind::Unavailable);
}

bool DigestAuthenticator::write_challenge(std::string& out, std::string_view realm, bool stale,
                                          const AlgorithmList& algorithms) noexcept {
    std::array<unsigned char, 8> random{};
    if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
        // Uniqueness is what matters here (the MAC makes it ours): a counter will do.
        ++nonce_counter_;
        std::memcpy(random.data(), &nonce_counter_, random.size());
    }
    char nonce[kNonceLength];
    if (!make_nonce(hasher_, nonce_key_, now_s(), random, realm, nonce)) return false;
    try {
        out.clear();
        // RFC 8760 §2.4 / RFC 7616 §3.7: one challenge per algorithm, most preferred first. A
        // subscriber whose list names nothing we know still gets the default's challenges (and
        // cannot succeed): an empty 401 would only tell a guesser about the record.
        for (DigestAlgorithm a : (algorithms.size > 0 ? algorithms : default_algorithms_).view()) {
            out.append("WWW-Authenticate: Digest realm=\"");
            out.append(realm);
            out.append("\", nonce=\"");
            out.append(nonce, sizeof nonce);
            out.append("\", algorithm=");
            out.append(algorithm_name(a));
            out.append(", qop=\"auth\"");
            if (stale) out.append(", stale=true");
            out.append("\r\n");
        }
    } catch (...) {  // std::bad_alloc
        out.clear();
        return false;
    }
    return true;
}

Authenticator::Verdict DigestAuthenticator::check(const sip::Message& msg,
                                                  const sip::RequestCore& core,
                                                  std::string_view aor, std::string& extra,
                                                  Done done, void* ctx) noexcept {
    (void)core;
    extra.clear();
    const std::string_view realm =
        config_.realm.empty() ? aor_domain(aor) : std::string_view(config_.realm);
    // Every challenge carries the subscriber's own algorithms: one store read (no failure is
    // counted in the store for these; the registrar counts a Reject in its metric).
    auto challenge = [&](Verdict v) { return fetch(msg, aor, realm, extra, done, ctx, v); };

    // Credentials for another realm are not for us (RFC 3261 §22.4): look for ours.
    sip::DigestCredentials cred;
    bool found = false;
    for (std::size_t i = 0; i < msg.header_count && !found; ++i) {
        if (msg.headers[i].id != sip::HeaderId::Authorization) continue;
        found = sip::parse_digest_credentials(msg.headers[i].value, cred) && cred.realm == realm;
    }
    if (!found) return challenge(Verdict::Challenge);

    // DESIGN §5: the authenticated user must own the To AOR. The password is never tried for
    // another user's AOR, so this costs the guesser nothing to learn and the store nothing.
    std::string_view user = aor_user(aor);
    if (user.empty() || cred.username != user) return Verdict::Forbidden;

    // Whether this subscriber may use the algorithm is known once its record is read.
    DigestAlgorithm algorithm;
    uint32_t nc = 0;
    if (!parse_algorithm(cred.algorithm, algorithm) || !base::iequals(cred.qop, "auth") ||
        cred.cnonce.empty() || !parse_nonce_count(cred.nc, nc) ||
        cred.response.size() != hex_length(algorithm))
        return challenge(Verdict::Reject);  // not an answer to any challenge of ours

    uint32_t issued = 0;
    const uint32_t now = now_s();
    NonceStatus ns = check_nonce(hasher_, nonce_key_, cred.nonce, realm, now,
                                 config_.nonce_lifetime_s, config_.max_clock_skew_s, issued);
    if (ns == NonceStatus::Invalid) return challenge(Verdict::Reject);

    Op* op = take_op();
    if (op == nullptr) return Verdict::Unavailable;
    op->done = done;
    op->ctx = ctx;
    op->extra = &extra;
    op->aor = aor;
    op->realm = realm;
    op->method = msg.method_name;
    op->cred = cred;
    op->algorithm = algorithm;
    op->nc = nc;
    op->issued_s = issued;
    op->stale = ns == NonceStatus::Stale;
    return start_fetch(op);
}

DigestAuthenticator::Op* DigestAuthenticator::take_op() noexcept {
    Op* op;
    if (!free_ops_.empty()) {
        op = free_ops_.back();
        free_ops_.pop_back();
    } else {
        auto fresh = std::unique_ptr<Op>(new (std::nothrow) Op);
        if (!fresh) return nullptr;
        op = fresh.get();
        try {
            ops_.push_back(std::move(fresh));
            free_ops_.reserve(ops_.size());  // so that giving an op back never allocates
        } catch (...) {
            return nullptr;
        }
    }
    *op = Op{};
    op->owner = this;
    op->algorithms = default_algorithms_;
    return op;
}

Authenticator::Verdict DigestAuthenticator::fetch(const sip::Message& msg, std::string_view aor,
                                                  std::string_view realm, std::string& extra,
                                                  Done done, void* ctx, Verdict verdict) noexcept {
    Op* op = take_op();
    if (op == nullptr) return Verdict::Unavailable;
    op->done = done;
    op->ctx = ctx;
    op->extra = &extra;
    op->aor = aor;
    op->realm = realm;
    op->method = msg.method_name;
    op->challenge_only = true;
    op->verdict = verdict;
    return start_fetch(op);
}

Authenticator::Verdict DigestAuthenticator::start_fetch(Op* op) noexcept {
    StoreError e = store_.fetch_auth(op->aor, &DigestAuthenticator::on_fetched, op);
    if (e != StoreError::None) {
        free_ops_.push_back(op);
        count_store_error(e);
        return Verdict::Unavailable;
    }
    ++pending_;
    return Verdict::Pending;
}

void DigestAuthenticator::complete(Op* op, Verdict verdict, bool stale) noexcept {
    if ((verdict == Verdict::Challenge || verdict == Verdict::Reject) &&
        !write_challenge(*op->extra, op->realm, stale, op->algorithms))
        verdict = Verdict::Unavailable;
    Done done = op->done;
    void* ctx = op->ctx;
    free_ops_.push_back(op);  // capacity reserved when the op was made
    --pending_;
    done(ctx, verdict);
}

void DigestAuthenticator::on_fetched(void* ctx, const location::AuthFetchReply& reply) noexcept {
    auto* op = static_cast<Op*>(ctx);
    DigestAuthenticator* self = op->owner;
    const DigestConfig& cfg = self->config_;
    if (reply.error != StoreError::None) {
        self->count_store_error(reply.error);
        self->complete(op, Verdict::Unavailable);
        return;
    }
    const location::Credentials& c = reply.credentials;
    op->algorithms = self->algorithms_of(c);
    if (op->challenge_only) {
        self->complete(op, op->verdict);
        return;
    }
    // Locked out: even the right password is refused until the cool-down ends.
    if (cfg.lockout.limit > 0 && reply.failures >= cfg.lockout.limit) {
        self->complete(op, Verdict::Forbidden);
        return;
    }
    if (c.found && !c.enabled) {
        self->complete(op, Verdict::Forbidden);
        return;
    }
    // An unknown user, an algorithm outside the subscriber's list (no downgrade to MD5 for a
    // subscriber kept to SHA-256), a record without this algorithm's HA1 or of another realm
    // cannot succeed;
    // the response is computed all the same (on a dummy HA1), so that it takes as long.
    static constexpr char kDummy[kMaxDigestHex + 1] =
        "0000000000000000000000000000000000000000000000000000000000000000";
    const std::size_t len = hex_length(op->algorithm);
    std::string_view ha1 = op->algorithm == DigestAlgorithm::Md5 ? c.ha1_md5 : c.ha1_sha256;
    bool usable = c.found && op->algorithms.contains(op->algorithm) && ha1.size() == len &&
                  (c.realm.empty() || c.realm == op->realm);
    if (!usable) ha1 = std::string_view(kDummy, len);
    DigestInput in{ha1,          op->cred.nonce, op->cred.nc, op->cred.cnonce,
                   op->cred.qop, op->method,     op->cred.uri};
    char want[kMaxDigestHex];
    std::size_t n = digest_response(self->hasher_, op->algorithm, in, want);
    bool ok = n == len && cfg.equal(std::string_view(want, n), op->cred.response) && usable;
    if (!ok) {
        if (cfg.lockout.limit == 0) {
            self->complete(op, Verdict::Reject);
            return;
        }
        StoreError e = self->store_.record_auth_failure(
            op->aor, cfg.lockout, &DigestAuthenticator::on_failure_counted, op);
        if (e != StoreError::None) {
            self->count_store_error(e);
            self->complete(op, Verdict::Reject);
        }
        return;
    }
    if (op->stale) {
        // RFC 7616 §3.3: stale=true only when the response was right, so the client can retry
        // on a fresh nonce without asking its user again.
        self->complete(op, Verdict::Challenge, true);
        return;
    }
    // The record lives as long as the nonce can be accepted by any instance.
    const uint32_t now = self->now_s();
    uint64_t until = uint64_t{op->issued_s} + cfg.nonce_lifetime_s + cfg.max_clock_skew_s;
    uint32_t ttl = until > now ? static_cast<uint32_t>(until - now) : 1;
    StoreError e = self->store_.advance_nonce_count(op->aor, op->cred.nonce, op->nc, ttl,
                                                    &DigestAuthenticator::on_nonce_count, op);
    if (e != StoreError::None) {
        self->count_store_error(e);
        self->complete(op, Verdict::Unavailable);
    }
}

void DigestAuthenticator::on_failure_counted(void* ctx,
                                             const location::AuthFailureReply& reply) noexcept {
    auto* op = static_cast<Op*>(ctx);
    DigestAuthenticator* self = op->owner;
    // The count only matters to later requests: this one is re-challenged whatever it says.
    if (reply.error != StoreError::None) self->count_store_error(reply.error);
    self->complete(op, Verdict::Reject);
}

void DigestAuthenticator::on_nonce_count(void* ctx,
                                         const location::NonceCountReply& reply) noexcept {
    auto* op = static_cast<Op*>(ctx);
    DigestAuthenticator* self = op->owner;
    if (reply.error != StoreError::None) {
        self->count_store_error(reply.error);
        self->complete(op, Verdict::Unavailable);
        return;
    }
    // A replayed (or reordered) nonce-count: RFC 7616 §3.4 lets the server refuse it.
    if (reply.fresh) self->stats_.auth_successes[static_cast<std::size_t>(op->algorithm)].inc();
    self->complete(op, reply.fresh ? Verdict::Allow : Verdict::Reject);
}

}  // namespace sipr::registrar
