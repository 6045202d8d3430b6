#include "sipr/registrar/digest_auth.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/rand.h>

#include <array>
#include <chrono>
#include <cstring>

#include "sipr/base/ascii.h"
#include "sipr/sip/uri.h"

namespace sipr::registrar {

using location::StoreError;

namespace {
// Bytes of SHA-256 kept as a request's fingerprint (hex in the store): 128 bits.
constexpr std::size_t kFingerprintBytes = 16;
}  // namespace

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

std::string_view auth_source(const sip::Peer& from,
                             std::span<char, kAuthSourceLength> out) noexcept {
    if (from.addr.ss_family == AF_INET) {
        sockaddr_in a{};
        std::memcpy(&a, &from.addr, sizeof a);
        if (inet_ntop(AF_INET, &a.sin_addr, out.data(), out.size()) == nullptr) return {};
        return std::string_view(out.data());
    }
    if (from.addr.ss_family != AF_INET6) return {};
    sockaddr_in6 a{};
    std::memcpy(&a, &from.addr, sizeof a);
    const unsigned char* b = a.sin6_addr.s6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a.sin6_addr)) {
        if (inet_ntop(AF_INET, b + 12, out.data(), out.size()) == nullptr) return {};
        return std::string_view(out.data());
    }
    in6_addr net{};
    std::memcpy(net.s6_addr, b, 8);  // the /64: the rest is the host's to choose
    if (inet_ntop(AF_INET6, &net, out.data(), out.size() - 3) == nullptr) return {};
    std::size_t n = std::strlen(out.data());
    std::memcpy(out.data() + n, "/64", 3);
    return std::string_view(out.data(), n + 3);
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
    std::string_view bytes;  // the whole REGISTER, for its fingerprint
    std::array<char, kAuthSourceLength> source_buf{};
    std::string_view source;  // into source_buf
    sip::DigestCredentials cred;
    DigestAlgorithm algorithm = DigestAlgorithm::Sha256;
    AlgorithmList algorithms;  // the challenge's: the default until the subscriber is read
    uint32_t nc = 0;
    uint32_t issued_s = 0;
    int64_t now_ms = 0;  // when the nonce-count was offered to the store
    bool stale = false;
    // Only the subscriber's algorithms are wanted: the answer is `verdict` with a challenge.
    bool challenge_only = false;
    Verdict verdict = Verdict::Challenge;
};

static_assert(static_cast<std::size_t>(DigestAlgorithm::Md5) == 0 &&
                  static_cast<std::size_t>(DigestAlgorithm::Sha256) == 1 &&
                  kAuthAlgorithmNames.size() == 2,
              "RegistrarStats::auth_successes is indexed by DigestAlgorithm");

DigestAuthenticator::DigestAuthenticator(DigestConfig config, location::AuthStore& store,
                                         RegistrarStats& stats)
    : config_(std::move(config)), store_(store), stats_(stats), nonce_key_(config_.nonce_secret) {
    if (config_.algorithms.empty()) config_.algorithms = {DigestAlgorithm::Md5};
    for (DigestAlgorithm a : config_.algorithms) default_algorithms_.add(a);
}

DigestAuthenticator::~DigestAuthenticator() = default;

int64_t DigestAuthenticator::now_ms() const noexcept {
    if (config_.clock_ms) return config_.clock_ms();
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

uint32_t DigestAuthenticator::now_s() const noexcept {
    int64_t ms = now_ms();
    return ms <= 0 ? 0 : static_cast<uint32_t>(ms / 1000);
}

AlgorithmList DigestAuthenticator::algorithms_of(const location::Credentials& c) const noexcept {
    if (!c.found || c.algorithms.empty()) return default_algorithms_;
    AlgorithmList own;
    parse_algorithm_list(c.algorithms, own);
    return own;
}

void DigestAuthenticator::count_store_error(StoreError e) noexcept {
    stats_.redis_error(location::redis_error_kind(e));
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
    // RFC 8760 §2.4 / RFC 7616 §3.7: one challenge per algorithm, most preferred first. A
    // subscriber whose list names nothing we know still gets the default's challenges (and
    // cannot succeed): an empty 401 would only tell a guesser about the record. `out` is the
    // registrar's per-slot buffer, reserved for two challenges, so this seldom allocates; an
    // allocation that fails terminates the process (src/README.md).
    out.clear();
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
    return true;
}

Authenticator::Verdict DigestAuthenticator::check(const sip::Message& msg,
                                                  const sip::RequestCore& core,
                                                  std::string_view bytes, const sip::Peer& from,
                                                  std::string_view aor, std::string& extra,
                                                  Done done, void* ctx) noexcept {
    (void)core;
    extra.clear();
    const std::string_view realm =
        config_.realm.empty() ? aor_domain(aor) : std::string_view(config_.realm);
    // Every challenge carries the subscriber's own algorithms: one store read (no failure is
    // counted in the store for these; the registrar counts a Reject in its metric).
    auto challenge = [&](Verdict v) { return fetch(msg, from, aor, realm, extra, done, ctx, v); };

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
    // RFC 7616 §3.4.6 (RFC 2617 §3.2.2.5): the uri the response was computed over must be the
    // Request-URI (equivalent after RFC 3261 §19.1.4), else a response captured for one request
    // would be accepted for another. A mismatch is a bad request (400), not a wrong password.
    if (!sip::uri_equivalent(cred.uri, msg.request_uri)) return Verdict::BadRequest;

    uint32_t issued = 0;
    const uint32_t now = now_s();
    NonceStatus ns = check_nonce(hasher_, nonce_key_, cred.nonce, realm, now,
                                 config_.nonce_lifetime_s, config_.max_clock_skew_s, issued);
    if (ns == NonceStatus::Invalid) return challenge(Verdict::Reject);

    Op* op = take_op(msg, from, aor, realm, extra, done, ctx);
    op->bytes = bytes;
    op->cred = cred;
    op->algorithm = algorithm;
    op->nc = nc;
    op->issued_s = issued;
    op->stale = ns == NonceStatus::Stale;
    return start_fetch(op);
}

DigestAuthenticator::Op* DigestAuthenticator::take_op(const sip::Message& msg,
                                                      const sip::Peer& from, std::string_view aor,
                                                      std::string_view realm, std::string& extra,
                                                      Done done, void* ctx) noexcept {
    Op* op = ops_.acquire();
    *op = Op{};
    op->owner = this;
    op->algorithms = default_algorithms_;
    op->done = done;
    op->ctx = ctx;
    op->extra = &extra;
    op->aor = aor;
    op->realm = realm;
    op->method = msg.method_name;
    op->source = auth_source(from, op->source_buf);
    return op;
}

Authenticator::Verdict DigestAuthenticator::fetch(const sip::Message& msg, const sip::Peer& from,
                                                  std::string_view aor, std::string_view realm,
                                                  std::string& extra, Done done, void* ctx,
                                                  Verdict verdict) noexcept {
    Op* op = take_op(msg, from, aor, realm, extra, done, ctx);
    op->challenge_only = true;
    op->verdict = verdict;
    return start_fetch(op);
}

Authenticator::Verdict DigestAuthenticator::start_fetch(Op* op) noexcept {
    StoreError e = store_.fetch_auth(op->aor, op->source, &DigestAuthenticator::on_fetched, op);
    if (e != StoreError::None) {
        ops_.release(op);
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
    ops_.release(op);
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
    // This source is locked out: even the right password is refused from it until the cool-down
    // ends. Failures are counted per source, so a guesser locks out itself, not the subscriber's
    // devices elsewhere.
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
        // An AOR that is no subscriber has nothing to protect: counting guesses at it would only
        // let anyone fill Redis with keys.
        if (cfg.lockout.limit == 0 || !c.found) {
            self->complete(op, Verdict::Reject);
            return;
        }
        StoreError e = self->store_.record_auth_failure(
            op->aor, op->source, cfg.lockout, &DigestAuthenticator::on_failure_counted, op);
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
    // The fingerprint of the whole request, contacts included: only that very request may come
    // again with this nc (a retransmission), never another carrying its Authorization.
    std::array<unsigned char, 32> sum{};
    const std::string_view whole[1] = {op->bytes};
    if (!self->hasher_.sha256(whole, sum)) {
        self->complete(op, Verdict::Unavailable);
        return;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    char fingerprint[2 * kFingerprintBytes];
    for (std::size_t i = 0; i < kFingerprintBytes; ++i) {
        fingerprint[2 * i] = kHex[sum[i] >> 4];
        fingerprint[2 * i + 1] = kHex[sum[i] & 0xf];
    }
    op->now_ms = self->now_ms();
    StoreError e = self->store_.advance_nonce_count(
        op->aor, op->cred.nonce, op->nc, ttl, std::string_view(fingerprint, sizeof fingerprint),
        op->now_ms, &DigestAuthenticator::on_nonce_count, op);
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
    if (reply.fresh) {
        self->stats_.auth_successes[static_cast<std::size_t>(op->algorithm)].inc();
        self->complete(op, Verdict::Allow);
        return;
    }
    // The nc was used before. Byte for byte the request it was accepted for, within 64*T1 of
    // then: a UDP retransmission (its 200 was lost), answered as the first time; the registrar
    // writes nothing new for it, so a captured copy cannot undo a later change. Anything else is
    // a replayed (or reordered) nonce-count, which RFC 7616 §3.4 lets the server refuse.
    const int64_t since = op->now_ms - reply.first_used_ms;
    const int64_t window = self->config_.retransmission_window_ms;
    const bool retransmission = reply.same_request && since <= window && since >= -window;
    self->complete(op, retransmission ? Verdict::Retransmission : Verdict::Reject);
}

}  // namespace sipr::registrar
