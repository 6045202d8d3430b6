// Digest authentication of REGISTER (DESIGN §5; RFC 7616, RFC 8760) through the Registrar, with
// the real DigestAuthenticator against a fake AuthStore that applies the semantics of
// src/location/auth_fetch.lua, auth_failure.lua and nonce_count.lua in C++, a fake location store,
// a fake sender and a fake clock. The client's credentials are computed here with OpenSSL's EVP
// directly, independently of the code under test.
#include "sipr/registrar/digest_auth.h"

#include <openssl/evp.h>

#include <doctest/doctest.h>

#include "support/peer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/location/auth_store.h"
#include "sipr/location/store.h"
#include "sipr/registrar/registrar.h"
#include "sipr/sip/message.h"

namespace {

using namespace sipr;
using location::StoreError;
using registrar::DigestAlgorithm;
using registrar::DigestAuthenticator;
using registrar::DigestConfig;

constexpr int64_t kT0 = 1'700'000'000'000;  // unix ms
const base::SipKey kKey = base::derive_sip_key("digest auth unit tests");
constexpr std::string_view kSecret = "nonce secret shared by every registrar";

// ---------------------------------------------------------------------------------------------
// The client side, computed independently

std::string hexdigest(const EVP_MD* md, std::string_view s) {
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    REQUIRE(EVP_Digest(s.data(), s.size(), raw, &len, md, nullptr) == 1);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out += kHex[raw[i] >> 4];
        out += kHex[raw[i] & 0xf];
    }
    return out;
}

struct Answer {
    std::string algorithm = "SHA-256";
    std::string user = "alice";
    std::string realm = "example.com";
    std::string password = "Circle Of Life";
    std::string nonce;
    std::string uri = "sip:example.com";
    std::string nc = "00000001";
    std::string cnonce = "0a4f113b";
    std::string qop = "auth";
    std::string method = "REGISTER";

    // The Authorization header line (without CRLF), RFC 7616 §3.4.
    [[nodiscard]] std::string header() const {
        const EVP_MD* md = algorithm == "MD5" ? EVP_md5() : EVP_sha256();
        std::string ha1 = hexdigest(md, user + ":" + realm + ":" + password);
        std::string ha2 = hexdigest(md, method + ":" + uri);
        std::string response =
            hexdigest(md, ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + ha2);
        std::string h = "Authorization: Digest username=\"" + user + "\", realm=\"" + realm +
                        "\", nonce=\"" + nonce + "\", uri=\"" + uri + "\", response=\"" + response +
                        "\", algorithm=" + algorithm + ", cnonce=\"" + cnonce + "\"";
        if (!qop.empty()) h += ", qop=" + qop + ", nc=" + nc;
        return h;
    }
};

// ---------------------------------------------------------------------------------------------
// Requests and responses

struct Reg {
    std::string to = "<sip:alice@example.com>";
    std::string call_id = "digest-1@192.0.2.10";
    uint32_t cseq = 1;
    std::string contact = "<sip:alice@192.0.2.10:5062>";
    std::vector<std::string> extra;  // header lines without CRLF

    [[nodiscard]] std::string text() const {
        std::string t = "REGISTER sip:example.com SIP/2.0\r\n";
        t += "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK" + std::to_string(cseq) + "\r\n";
        t += "Max-Forwards: 70\r\n";
        t += "To: " + to + "\r\n";
        t += "From: " + to + ";tag=456248\r\n";
        t += "Call-ID: " + call_id + "\r\n";
        t += "CSeq: " + std::to_string(cseq) + " REGISTER\r\n";
        t += "Contact: " + contact + "\r\n";
        t += "Expires: 600\r\n";
        for (const std::string& e : extra) t += e + "\r\n";
        t += "Content-Length: 0\r\n\r\n";
        return t;
    }
};

// One challenge of a 401: its parameters.
struct Challenge {
    std::string realm, nonce, algorithm, qop;
    bool stale = false;
};

// The value of `name` in a WWW-Authenticate value (quotes removed).
std::string param(std::string_view v, std::string_view name) {
    std::string key = std::string(name) + "=";
    std::size_t at = 0;
    for (;;) {
        at = v.find(key, at);
        if (at == std::string_view::npos) return {};
        if (at == 0 || v[at - 1] == ' ' || v[at - 1] == ',') break;
        at += key.size();
    }
    std::size_t b = at + key.size();
    if (b < v.size() && v[b] == '"') {
        std::size_t e = v.find('"', b + 1);
        return std::string(v.substr(b + 1, e - b - 1));
    }
    std::size_t e = v.find_first_of(", ", b);
    return std::string(v.substr(b, e == std::string_view::npos ? v.size() - b : e - b));
}

struct Response {
    std::string text;
    std::unique_ptr<sip::Message> msg = std::make_unique<sip::Message>();
    [[nodiscard]] uint16_t code() const { return msg->status_code; }
    [[nodiscard]] std::vector<Challenge> challenges() const {
        std::vector<Challenge> out;
        for (std::size_t i = 0; i < msg->header_count; ++i) {
            if (msg->headers[i].id != sip::HeaderId::WwwAuthenticate) continue;
            std::string_view v = msg->headers[i].value;
            REQUIRE(v.substr(0, 7) == "Digest ");
            out.push_back(Challenge{param(v, "realm"), param(v, "nonce"), param(v, "algorithm"),
                                    param(v, "qop"), param(v, "stale") == "true"});
        }
        return out;
    }
};

class FakeSender final : public sip::Sender {
  public:
    std::vector<std::string> sent;
    bool send(std::string_view bytes, const sip::Peer&, uint16_t) noexcept override {
        sent.emplace_back(bytes);
        return true;
    }
};

// ---------------------------------------------------------------------------------------------
// Fake stores

// Answers every REGISTER with 200 and no bindings, later (as Redis would).
class FakeLocation final : public location::RegisterStore {
  public:
    std::vector<location::RegisterChanges> applied;
    StoreError apply_register(const location::RegisterChanges& ch, location::RegisterCallback cb,
                              void* ctx) noexcept override {
        applied.push_back(ch);
        queue_.push_back({cb, ctx});
        return StoreError::None;
    }
    [[nodiscard]] bool available() const noexcept override { return true; }
    bool run() {
        if (queue_.empty()) return false;
        auto q = std::move(queue_);
        queue_.clear();
        for (auto& [cb, ctx] : q) {
            location::RegisterReply r;
            r.now_ms = kT0;
            cb(ctx, r);
        }
        return true;
    }

  private:
    std::vector<std::pair<location::RegisterCallback, void*>> queue_;
};

// The three auth scripts in C++, keyed and timed like Redis (EXPIRE on the fake clock).
class FakeAuthStore final : public location::AuthStore {
  public:
    explicit FakeAuthStore(const int64_t& now_ms) : now_ms_(now_ms) {}

    std::map<std::string, std::map<std::string, std::string>> subscribers;  // aor -> hash
    StoreError refuse = StoreError::None;  // every call refused at once with this
    int fetches = 0, failures_recorded = 0, nonce_counts = 0;

    // sip-locctl user add, as src/app/locctl_main.cpp writes it.
    void add_user(const std::string& aor, const std::string& user, const std::string& realm,
                  const std::string& password, const std::string& algorithms = "") {
        std::string a1 = user + ":" + realm + ":" + password;
        subscribers[aor] = {{"ha1-md5", hexdigest(EVP_md5(), a1)},
                            {"ha1-sha256", hexdigest(EVP_sha256(), a1)},
                            {"enabled", "1"},
                            {"realm", realm}};
        if (!algorithms.empty()) subscribers[aor]["algorithms"] = algorithms;  // --algorithms
    }
    // Failures of `aor` from `source` (the instances' peer unless said otherwise).
    [[nodiscard]] uint32_t failures(const std::string& aor,
                                    const std::string& source = "192.0.2.10") const {
        auto it = fail_.find(aor + " " + source);
        return it == fail_.end() || it->second.until_ms <= now_ms_ ? 0 : it->second.n;
    }
    [[nodiscard]] int64_t failures_ttl_s(const std::string& aor,
                                         const std::string& source = "192.0.2.10") const {
        auto it = fail_.find(aor + " " + source);
        return it == fail_.end() ? -2 : (it->second.until_ms - now_ms_) / 1000;
    }
    // Failure records (keys) of any source.
    [[nodiscard]] std::size_t failure_keys() const { return fail_.size(); }

    StoreError fetch_auth(std::string_view aor, std::string_view source,
                          location::AuthFetchCallback cb, void* ctx) noexcept override {
        if (refuse != StoreError::None) return refuse;
        ++fetches;
        std::string a(aor);
        std::string src(source);
        queue_.push_back([this, a, src, cb, ctx] {
            location::AuthFetchReply r;
            r.failures = failures(a, src);
            auto it = subscribers.find(a);
            if (it != subscribers.end()) {
                // Views into the map, as hiredis' reply would be: valid during the callback.
                location::Credentials& c = r.credentials;
                c.found = true;
                c.enabled = true;
                for (const auto& [k, v] : it->second) {
                    if (k == "ha1-md5") c.ha1_md5 = v;
                    if (k == "ha1-sha256") c.ha1_sha256 = v;
                    if (k == "enabled") c.enabled = v != "0";
                    if (k == "realm") c.realm = v;
                    if (k == "algorithms") c.algorithms = v;
                }
            }
            cb(ctx, r);
        });
        return StoreError::None;
    }
    StoreError record_auth_failure(std::string_view aor, std::string_view source,
                                   const location::AuthFailurePolicy& p,
                                   location::AuthFailureCallback cb, void* ctx) noexcept override {
        if (refuse != StoreError::None) return refuse;
        ++failures_recorded;
        std::string a(aor);
        std::string key = a + " " + std::string(source);
        queue_.push_back([this, a, key, p, cb, ctx] {
            location::AuthFailureReply r;
            // auth_failure.lua: nothing for an AOR that is no subscriber; else INCR per source;
            // the first opens the window, the limit starts the cool-down.
            if (subscribers.count(a) == 0) {
                cb(ctx, r);
                return;
            }
            Fail& f = fail_[key];
            if (f.until_ms <= now_ms_) f = Fail{};
            ++f.n;
            if (f.n == 1) f.until_ms = now_ms_ + int64_t{p.window_s} * 1000;
            if (f.n == p.limit) f.until_ms = now_ms_ + int64_t{p.cooldown_s} * 1000;
            r.failures = f.n;
            cb(ctx, r);
        });
        return StoreError::None;
    }
    StoreError advance_nonce_count(std::string_view aor, std::string_view nonce, uint32_t nc,
                                   uint32_t ttl_s, std::string_view fingerprint, int64_t now_ms,
                                   location::NonceCountCallback cb, void* ctx) noexcept override {
        if (refuse != StoreError::None) return refuse;
        ++nonce_counts;
        std::string key = std::string(aor) + " " + std::string(nonce);
        std::string fp(fingerprint);
        last_ttl_s = ttl_s;
        queue_.push_back([this, key, nc, ttl_s, fp, now_ms, cb, ctx] {
            // nonce_count.lua: SET if greater, with the request's fingerprint and time, expiring
            // with the nonce; the same nc and fingerprint again is reported with that time.
            location::NonceCountReply r;
            auto it = nc_.find(key);
            const bool live = it != nc_.end() && it->second.until_ms > now_ms_;
            uint32_t last = live ? it->second.nc : 0;
            r.fresh = nc > last;
            if (r.fresh) {
                nc_[key] = Nc{nc, now_ms_ + int64_t{ttl_s} * 1000, fp, now_ms};
            } else if (live && nc == last && fp == it->second.fingerprint) {
                r.same_request = true;
                r.first_used_ms = it->second.first_ms;
            }
            cb(ctx, r);
        });
        return StoreError::None;
    }
    uint32_t last_ttl_s = 0;

    bool run() {
        if (queue_.empty()) return false;
        auto q = std::move(queue_);
        queue_.clear();
        for (auto& f : q) f();
        return true;
    }

  private:
    struct Fail {
        uint32_t n = 0;
        int64_t until_ms = 0;
    };
    struct Nc {
        uint32_t nc = 0;
        int64_t until_ms = 0;
        std::string fingerprint;
        int64_t first_ms = 0;
    };
    const int64_t& now_ms_;
    std::map<std::string, Fail> fail_;
    std::map<std::string, Nc> nc_;
    std::vector<std::function<void()>> queue_;
};

// ---------------------------------------------------------------------------------------------
// The rig: one registrar instance; several may share one FakeAuthStore (one Redis).

// Both algorithms, SHA-256 first, for every subscriber without a list of its own (the product's
// default is MD5 alone; see "the default offers MD5 alone").
DigestConfig digest_config(const int64_t& now_ms) {
    DigestConfig c;
    c.algorithms = {DigestAlgorithm::Sha256, DigestAlgorithm::Md5};
    c.nonce_secret = std::string(kSecret);
    c.nonce_lifetime_s = 300;
    c.lockout.limit = 3;
    c.lockout.window_s = 60;
    c.lockout.cooldown_s = 120;
    c.clock_ms = [&now_ms] { return now_ms; };
    return c;
}

struct Instance {
    FakeLocation location;
    FakeSender sender;
    sip::MessageStats messages;
    registrar::RegistrarStats stats;
    std::unique_ptr<DigestAuthenticator> auth;
    std::unique_ptr<registrar::Registrar> r;
    sip::Peer peer = test::make_peer("192.0.2.10", 5062);

    Instance(DigestConfig c, FakeAuthStore& store) {
        registrar::Config rc;
        rc.tag_key = kKey;
        rc.default_expires = 600;
        auth = std::make_unique<DigestAuthenticator>(std::move(c), store, stats);
        r = std::make_unique<registrar::Registrar>(rc, location, sender, messages, stats);
        r->set_authenticator(auth.get());
    }
};

struct Rig {
    int64_t now_ms = kT0;
    FakeAuthStore store{now_ms};
    std::vector<std::unique_ptr<Instance>> instances;

    explicit Rig(std::function<void(DigestConfig&)> tweak = {}) {
        add_instance(tweak);
        store.add_user("sip:alice@example.com", "alice", "example.com", "Circle Of Life");
        store.add_user("sip:bob@example.com", "bob", "example.com", "bob's password");
    }
    Instance& add_instance(const std::function<void(DigestConfig&)>& tweak = {}) {
        DigestConfig c = digest_config(now_ms);
        if (tweak) tweak(c);
        instances.push_back(std::make_unique<Instance>(std::move(c), store));
        return *instances.back();
    }
    Instance& a() { return *instances.front(); }

    // Sends one REGISTER to instance `i`, lets the stores answer, returns the response.
    std::unique_ptr<Response> send(const Reg& req, std::size_t i = 0) {
        Instance& in = *instances[i];
        std::size_t before = in.sender.sent.size();
        std::string bytes = req.text();
        in.r->on_datagram(bytes, in.peer);
        std::fill(bytes.begin(), bytes.end(), 'X');  // the receive buffer dies with the callback
        while (store.run() || in.location.run()) {
        }
        CHECK(in.r->pending() == 0);
        CHECK(in.auth->pending() == 0);
        REQUIRE(in.sender.sent.size() == before + 1);
        auto p = std::make_unique<Response>();
        p->text = in.sender.sent.back();
        REQUIRE(sip::parse_message(p->text, *p->msg) == sip::ParseStatus::Ok);
        return p;
    }
    // A REGISTER without credentials: its 401's first challenge.
    Challenge challenge(std::size_t i = 0, const std::string& to = "<sip:alice@example.com>") {
        Reg r;
        r.to = to;
        auto p = send(r, i);
        REQUIRE(p->code() == 401);
        auto c = p->challenges();
        REQUIRE(!c.empty());
        return c.front();
    }
    std::unique_ptr<Response> answer(const Answer& a, uint32_t cseq = 2, std::size_t i = 0,
                                     const std::string& to = "<sip:alice@example.com>") {
        Reg r;
        r.to = to;
        r.cseq = cseq;
        r.extra.push_back(a.header());
        return send(r, i);
    }
    [[nodiscard]] std::size_t stored(std::size_t i = 0) const {
        return instances[i]->location.applied.size();
    }
};

Answer answer_to(const Challenge& c) {
    Answer a;
    a.nonce = c.nonce;
    a.algorithm = c.algorithm;
    a.realm = c.realm;
    return a;
}

// A spy on the comparison (DigestConfig::equal): the product passes digests_equal.
int g_equal_calls = 0;
std::size_t g_equal_len = 0;
bool spy_equal(std::string_view expected, std::string_view given) noexcept {
    ++g_equal_calls;
    g_equal_len = expected.size();
    return registrar::digests_equal(expected, given);
}

}  // namespace

TEST_SUITE_BEGIN("registrar");

TEST_CASE("digest auth: no credentials -> 401, SHA-256 then MD5, qop=auth, one store read") {
    Rig rig;
    auto p = rig.send(Reg{});
    CHECK(p->code() == 401);
    auto c = p->challenges();
    REQUIRE(c.size() == 2);
    CHECK(c[0].algorithm == "SHA-256");  // RFC 8760 §2.4: the preferred one first
    CHECK(c[1].algorithm == "MD5");
    for (const Challenge& ch : c) {
        CHECK(ch.realm == "example.com");  // the AOR's domain
        CHECK(ch.qop == "auth");
        CHECK_FALSE(ch.stale);
        CHECK(ch.nonce.size() == registrar::kNonceLength);
    }
    CHECK(c[0].nonce == c[1].nonce);
    // The subscriber's record is read for its algorithms; nothing is written.
    CHECK(rig.store.fetches == 1);
    CHECK(rig.store.failures_recorded + rig.store.nonce_counts == 0);
    CHECK(rig.stored() == 0);
    CHECK(rig.a().stats.auth_failures.get() == 0);  // a challenge is not a failure
    // Each challenge has a nonce of its own.
    CHECK(rig.challenge().nonce != c[0].nonce);
}

TEST_CASE("digest auth: the right response registers, SHA-256 or MD5") {
    Rig rig;
    SUBCASE("SHA-256") {
        Challenge c = rig.challenge();
        auto p = rig.answer(answer_to(c));
        CHECK(p->code() == 200);
    }
    SUBCASE("MD5 (the second challenge)") {
        Reg r;
        auto first = rig.send(r);
        Challenge md5 = first->challenges().at(1);
        REQUIRE(md5.algorithm == "MD5");
        auto p = rig.answer(answer_to(md5));
        CHECK(p->code() == 200);
    }
    SUBCASE("hex in upper case") {
        Challenge c = rig.challenge();
        Reg r;
        r.cseq = 2;
        std::string h = answer_to(c).header();
        std::size_t at = h.find("response=\"") + 10;
        for (std::size_t i = at; h[i] != '"'; ++i)
            h[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(h[i])));
        r.extra.push_back(h);
        CHECK(rig.send(r)->code() == 200);
    }
    CHECK(rig.stored() == 1);
    CHECK(rig.store.fetches == 2);  // the challenge's and the answer's
    CHECK(rig.store.nonce_counts == 1);
    CHECK(rig.store.last_ttl_s == 300 + 30);  // the nonce's lifetime (and the clock skew allowed)
    CHECK(rig.a().stats.auth_failures.get() == 0);
}

TEST_CASE("digest auth: --realm replaces the AOR's domain in the challenge and the check") {
    Rig rig([](DigestConfig& c) { c.realm = "sip-redirect"; });
    rig.store.add_user("sip:alice@example.com", "alice", "sip-redirect", "Circle Of Life");
    Challenge c = rig.challenge();
    CHECK(c.realm == "sip-redirect");
    CHECK(rig.answer(answer_to(c))->code() == 200);
}

TEST_CASE("digest auth: a wrong password -> 401 with a fresh challenge, counted, nothing stored") {
    Rig rig;
    Challenge c = rig.challenge();
    Answer a = answer_to(c);
    a.password = "Circle of Life";  // one letter off
    auto p = rig.answer(a);
    CHECK(p->code() == 401);
    auto again = p->challenges();
    REQUIRE(again.size() == 2);
    CHECK_FALSE(again[0].stale);
    CHECK(again[0].nonce != c.nonce);
    CHECK(rig.stored() == 0);
    CHECK(rig.store.failures("sip:alice@example.com") == 1);
    CHECK(rig.store.nonce_counts == 0);
    CHECK(rig.a().stats.auth_failures.get() == 1);
}

TEST_CASE("digest auth: the response is compared with the constant-time comparison") {
    g_equal_calls = 0;
    Rig rig([](DigestConfig& c) { c.equal = &spy_equal; });
    Challenge c = rig.challenge();
    CHECK(rig.answer(answer_to(c))->code() == 200);
    CHECK(g_equal_calls == 1);
    CHECK(g_equal_len == 64);  // the whole SHA-256 response
    Answer wrong = answer_to(rig.challenge());
    wrong.password = "guess";
    CHECK(rig.answer(wrong, 3)->code() == 401);
    CHECK(g_equal_calls == 2);
    // An unknown user is compared too (on a dummy HA1): it takes as long as a known one.
    Answer ghost = answer_to(rig.challenge(0, "<sip:carol@example.com>"));
    ghost.user = "carol";
    CHECK(rig.answer(ghost, 4, 0, "<sip:carol@example.com>")->code() == 401);
    CHECK(g_equal_calls == 3);
    // And the product's default is digests_equal, which compares with CRYPTO_memcmp.
    int64_t now = kT0;
    const bool product_default = DigestConfig{}.equal == &registrar::digests_equal &&
                                 digest_config(now).equal == &registrar::digests_equal;
    CHECK(product_default);
}

TEST_CASE("digest auth: an expired nonce -> 401 stale=true, but only for the right password") {
    Rig rig;
    Challenge c = rig.challenge();
    rig.now_ms += 301'000;  // past the 300 s lifetime
    SUBCASE("right password: stale=true on every challenge, not a failure") {
        auto p = rig.answer(answer_to(c));
        CHECK(p->code() == 401);
        auto again = p->challenges();
        REQUIRE(again.size() == 2);
        CHECK(again[0].stale);
        CHECK(again[1].stale);
        CHECK(again[0].nonce != c.nonce);
        CHECK(rig.a().stats.auth_failures.get() == 0);
        CHECK(rig.store.failures("sip:alice@example.com") == 0);
        CHECK(rig.store.nonce_counts == 0);
        // The client retries on the new nonce without asking its user: registered.
        CHECK(rig.answer(answer_to(again[0]), 3)->code() == 200);
    }
    SUBCASE("wrong password: a plain 401, counted") {
        Answer a = answer_to(c);
        a.password = "guess";
        auto p = rig.answer(a);
        CHECK(p->code() == 401);
        CHECK_FALSE(p->challenges().at(0).stale);
        CHECK(rig.a().stats.auth_failures.get() == 1);
        CHECK(rig.store.failures("sip:alice@example.com") == 1);
    }
    CHECK(rig.stored() <= 1);
}

TEST_CASE("digest auth: a nonce under another secret -> 401, decided before the password") {
    Rig rig;
    Instance& other = rig.add_instance([](DigestConfig& c) { c.nonce_secret = "another secret"; });
    (void)other;
    Challenge foreign = rig.challenge(1);
    auto p = rig.answer(answer_to(foreign), 2, 0);
    CHECK(p->code() == 401);
    CHECK_FALSE(p->challenges().at(0).stale);
    CHECK(rig.store.fetches == 2);  // each challenge reads only the subscriber's algorithms
    CHECK(rig.store.failures_recorded + rig.store.nonce_counts == 0);
    CHECK(rig.stored() == 0);
    CHECK(rig.a().stats.auth_failures.get() == 1);
}

TEST_CASE("digest auth: any instance sharing the secret accepts another's nonce") {
    Rig rig;
    rig.add_instance();
    Challenge c = rig.challenge(0);
    CHECK(rig.answer(answer_to(c), 2, 1)->code() == 200);
    CHECK(rig.stored(1) == 1);
}

TEST_CASE("digest auth: a replayed nonce-count -> 401, on this instance or another") {
    Rig rig;
    rig.add_instance();
    Challenge c = rig.challenge();
    Answer a = answer_to(c);
    CHECK(rig.answer(a, 2, 0)->code() == 200);
    // The same credentials again (a captured REGISTER), to either instance: refused.
    CHECK(rig.answer(a, 3, 0)->code() == 401);
    CHECK(rig.answer(a, 4, 1)->code() == 401);
    CHECK(rig.stored(0) + rig.stored(1) == 1);
    CHECK(rig.a().stats.auth_failures.get() == 1);
    CHECK(rig.store.failures("sip:alice@example.com") == 0);  // no password was guessed
    // The next nc on the same nonce is fine; going back is not.
    a.nc = "00000002";
    CHECK(rig.answer(a, 5, 1)->code() == 200);
    a.nc = "00000001";
    CHECK(rig.answer(a, 6, 0)->code() == 401);
    a.nc = "0000000a";
    CHECK(rig.answer(a, 7, 0)->code() == 200);
}

TEST_CASE("digest auth: a byte-identical retransmission -> 200 again, not a replay") {
    // A UDP retransmission after a lost 200 carries the same nonce and nc (RFC 3261 §17.1.2.2).
    Rig rig;
    rig.add_instance();
    Reg req;
    req.cseq = 2;
    req.extra.push_back(answer_to(rig.challenge()).header());
    CHECK(rig.send(req, 0)->code() == 200);
    rig.now_ms += 500;  // T1
    auto again = rig.send(req, 0);
    CHECK(again->code() == 200);
    rig.now_ms += 4'000;  // on another instance sharing the store, too
    CHECK(rig.send(req, 1)->code() == 200);
    CHECK(rig.a().stats.auth_failures.get() == 0);
    CHECK(rig.instances[1]->stats.auth_failures.get() == 0);
    // The first is applied; the retransmissions are answered from the store, writing nothing.
    REQUIRE(rig.stored(0) == 2);
    CHECK_FALSE(rig.a().location.applied[0].retransmission);
    CHECK(rig.a().location.applied[1].retransmission);
    REQUIRE(rig.stored(1) == 1);
    CHECK(rig.instances[1]->location.applied[0].retransmission);
}

TEST_CASE("digest auth: the same Authorization on a request that differs -> 401, a replay") {
    Rig rig;
    Reg req;
    req.cseq = 2;
    req.extra.push_back(answer_to(rig.challenge()).header());
    CHECK(rig.send(req)->code() == 200);
    SUBCASE("another Contact") {
        req.contact = "<sip:mallory@198.51.100.66:5060>";
    }
    SUBCASE("another CSeq") {
        req.cseq = 3;
    }
    SUBCASE("one more header") {
        req.extra.push_back("Expires: 0");
    }
    auto p = rig.send(req);
    CHECK(p->code() == 401);
    CHECK_FALSE(p->challenges().at(0).stale);
    CHECK(rig.stored() == 1);
    CHECK(rig.a().stats.auth_failures.get() == 1);
}

TEST_CASE("digest auth: a retransmission is one only within 64*T1 (32 s) of the first use") {
    Rig rig;
    Reg req;
    req.cseq = 2;
    req.extra.push_back(answer_to(rig.challenge()).header());
    CHECK(rig.send(req)->code() == 200);
    const int64_t first = rig.now_ms;
    rig.now_ms = first + 31'999;
    CHECK(rig.send(req)->code() == 200);
    rig.now_ms = first + 32'000;  // the window is counted from the first use, not the last
    CHECK(rig.send(req)->code() == 200);
    rig.now_ms = first + 32'001;
    CHECK(rig.send(req)->code() == 401);
    CHECK(rig.stored() == 3);
    CHECK(rig.a().stats.auth_failures.get() == 1);
}

TEST_CASE("digest auth: a user registering another user's AOR -> 403, without the store") {
    Rig rig;
    Challenge c = rig.challenge(0, "<sip:alice@example.com>");
    Answer bob = answer_to(c);
    bob.user = "bob";
    bob.password = "bob's password";  // bob's own, right password
    rig.store.fetches = 0;            // the challenge's
    auto p = rig.answer(bob, 2, 0, "<sip:alice@example.com>");
    CHECK(p->code() == 403);
    CHECK(p->challenges().empty());
    CHECK(rig.store.fetches == 0);
    CHECK(rig.stored() == 0);
    CHECK(rig.a().stats.auth_failures.get() == 1);
    // bob's credentials for bob's AOR are fine.
    Challenge cb = rig.challenge(0, "<sip:bob@example.com>");
    Answer own = answer_to(cb);
    own.user = "bob";
    own.password = "bob's password";
    CHECK(rig.answer(own, 3, 0, "<sip:bob@example.com>")->code() == 200);
}

TEST_CASE("digest auth: N failures lock the AOR out for the cool-down, on every instance") {
    Rig rig;  // limit 3, window 60 s, cool-down 120 s
    rig.add_instance();
    const std::string aor = "sip:alice@example.com";
    for (uint32_t i = 0; i < 3; ++i) {
        Answer a = answer_to(rig.challenge(i % 2));
        a.password = "guess " + std::to_string(i);
        CHECK(rig.answer(a, 10 + i, i % 2)->code() == 401);
    }
    CHECK(rig.store.failures(aor) == 3);
    CHECK(rig.store.failures_ttl_s(aor) == 120);
    // Now even the right password is refused, on either instance, and nothing more is counted.
    for (std::size_t i : {0, 1}) {
        auto p = rig.answer(answer_to(rig.challenge(i)), static_cast<uint32_t>(20 + i), i);
        CHECK(p->code() == 403);
    }
    CHECK(rig.store.failures_recorded == 3);
    CHECK(rig.stored(0) + rig.stored(1) == 0);
    // Another AOR is not affected.
    Answer bob = answer_to(rig.challenge(0, "<sip:bob@example.com>"));
    bob.user = "bob";
    bob.password = "bob's password";
    CHECK(rig.answer(bob, 30, 0, "<sip:bob@example.com>")->code() == 200);
    // After the cool-down the right password works again.
    rig.now_ms += 121'000;
    CHECK(rig.answer(answer_to(rig.challenge(1)), 40, 1)->code() == 200);
}

TEST_CASE("digest auth: the lock-out is per source: a guesser does not lock out other sources") {
    Rig rig;  // limit 3, window 60 s, cool-down 120 s
    Instance& guesser_side = rig.add_instance();
    guesser_side.peer = test::make_peer("192.0.2.66", 5060);
    const std::string aor = "sip:alice@example.com";
    for (uint32_t i = 0; i < 5; ++i) {
        Answer a = answer_to(rig.challenge(1));
        a.password = "guess " + std::to_string(i);
        auto p = rig.answer(a, 10 + i, 1);
        CHECK(p->code() == (i < 3 ? 401 : 403));
    }
    CHECK(rig.store.failures(aor, "192.0.2.66") == 3);
    CHECK(rig.store.failures(aor) == 0);
    // The guesser's source is refused even the right password...
    CHECK(rig.answer(answer_to(rig.challenge(1)), 20, 1)->code() == 403);
    // ...but alice's own device, elsewhere, registers (through the same instance or another).
    CHECK(rig.answer(answer_to(rig.challenge(0)), 21, 0)->code() == 200);
    CHECK(rig.stored(0) == 1);
    CHECK(rig.stored(1) == 0);
}

TEST_CASE("digest auth: wrong answers for an AOR that is no subscriber leave no failure record") {
    Rig rig;
    for (uint32_t i = 0; i < 5; ++i) {
        Answer a = answer_to(rig.challenge(0, "<sip:nobody@example.com>"));
        a.user = "nobody";
        a.password = "guess";
        CHECK(rig.answer(a, 10 + i, 0, "<sip:nobody@example.com>")->code() == 401);
    }
    CHECK(rig.store.failures_recorded == 0);
    CHECK(rig.store.failure_keys() == 0);
    CHECK(rig.a().stats.auth_failures.get() == 5);  // still failures in the metric
}

TEST_CASE("digest auth: auth_source: IPv4, an IPv6 /64, IPv4-mapped IPv6") {
    std::array<char, registrar::kAuthSourceLength> buf{};
    CHECK(registrar::auth_source(test::make_peer("192.0.2.7", 5060), buf) == "192.0.2.7");
    CHECK(registrar::auth_source(test::make_peer("2001:db8:1:2:aaaa::7", 5060), buf) ==
          "2001:db8:1:2::/64");
    CHECK(registrar::auth_source(test::make_peer("2001:db8:1:2:bbbb::9", 5060), buf) ==
          "2001:db8:1:2::/64");
    CHECK(registrar::auth_source(test::make_peer("::ffff:198.51.100.4", 5060), buf) ==
          "198.51.100.4");
    CHECK(registrar::auth_source(sip::Peer{}, buf).empty());
}

TEST_CASE("digest auth: failures spread over more than the window do not lock out") {
    Rig rig;
    const std::string aor = "sip:alice@example.com";
    for (uint32_t i = 0; i < 4; ++i) {
        Answer a = answer_to(rig.challenge());
        a.password = "guess";
        CHECK(rig.answer(a, 10 + i)->code() == 401);
        rig.now_ms += 31'000;  // two per minute, under the limit of three
    }
    CHECK(rig.store.failures(aor) < 3);
    CHECK(rig.answer(answer_to(rig.challenge()), 20)->code() == 200);
}

TEST_CASE("digest auth: --auth-fail-limit 0 turns the lock-out off") {
    Rig rig([](DigestConfig& c) { c.lockout.limit = 0; });
    for (uint32_t i = 0; i < 10; ++i) {
        Answer a = answer_to(rig.challenge());
        a.password = "guess";
        CHECK(rig.answer(a, 10 + i)->code() == 401);
    }
    CHECK(rig.store.failures_recorded == 0);
    CHECK(rig.answer(answer_to(rig.challenge()), 30)->code() == 200);
}

TEST_CASE("digest auth: a disabled subscriber -> 403 even with the right password") {
    Rig rig;
    rig.store.subscribers["sip:alice@example.com"]["enabled"] = "0";
    auto p = rig.answer(answer_to(rig.challenge()));
    CHECK(p->code() == 403);
    CHECK(rig.stored() == 0);
    CHECK(rig.a().stats.auth_failures.get() == 1);
}

TEST_CASE("digest auth: no subscriber, or an HA1 of another realm -> 401") {
    Rig rig;
    SUBCASE("unknown AOR") {
        Answer a = answer_to(rig.challenge(0, "<sip:carol@example.com>"));
        a.user = "carol";
        CHECK(rig.answer(a, 2, 0, "<sip:carol@example.com>")->code() == 401);
    }
    SUBCASE("added with sip-locctl user add --realm other") {
        rig.store.add_user("sip:alice@example.com", "alice", "other", "Circle Of Life");
        CHECK(rig.answer(answer_to(rig.challenge()))->code() == 401);
    }
    SUBCASE("a record without the SHA-256 HA1") {
        rig.store.subscribers["sip:alice@example.com"].erase("ha1-sha256");
        CHECK(rig.answer(answer_to(rig.challenge()))->code() == 401);
    }
    CHECK(rig.stored() == 0);
    CHECK(rig.a().stats.auth_failures.get() == 1);
}

TEST_CASE("digest auth: --auth-algorithms MD5 offers MD5 only and refuses SHA-256 answers") {
    Rig rig([](DigestConfig& c) { c.algorithms = {DigestAlgorithm::Md5}; });
    auto p = rig.send(Reg{});
    auto c = p->challenges();
    REQUIRE(c.size() == 1);
    CHECK(c[0].algorithm == "MD5");
    Answer sha = answer_to(c[0]);
    sha.algorithm = "SHA-256";  // a downgrade's opposite, but still not what was offered
    CHECK(rig.answer(sha)->code() == 401);
    CHECK(rig.store.nonce_counts == 0);
    CHECK(rig.answer(answer_to(c[0]), 3)->code() == 200);
}

TEST_CASE("digest auth: credentials that answer no challenge of ours") {
    Rig rig;
    Challenge c = rig.challenge();
    SUBCASE("another realm's credentials are ignored: a plain challenge, not a failure") {
        Answer a = answer_to(c);
        a.realm = "elsewhere.example";
        auto p = rig.answer(a);
        CHECK(p->code() == 401);
        CHECK(rig.a().stats.auth_failures.get() == 0);
    }
    SUBCASE("no qop (RFC 2069 style): refused, there is no nonce-count to protect it") {
        Answer a = answer_to(c);
        a.qop = "";
        CHECK(rig.answer(a)->code() == 401);
        CHECK(rig.a().stats.auth_failures.get() == 1);
    }
    SUBCASE("qop=auth-int, MD5-sess, a bad nc: refused") {
        Answer a = answer_to(c);
        a.qop = "auth-int";
        CHECK(rig.answer(a)->code() == 401);
        a = answer_to(c);
        a.algorithm = "MD5-sess";
        CHECK(rig.answer(a, 3)->code() == 401);
        a = answer_to(c);
        a.nc = "1";
        CHECK(rig.answer(a, 4)->code() == 401);
        CHECK(rig.a().stats.auth_failures.get() == 3);
    }
    SUBCASE("a made-up nonce") {
        Answer a = answer_to(c);
        a.nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
        CHECK(rig.answer(a)->code() == 401);
    }
    // Refused before the password is looked at: the store is read only for the re-challenge's
    // algorithms, and nothing is counted there.
    CHECK(rig.store.failures_recorded + rig.store.nonce_counts == 0);
    CHECK(rig.stored() == 0);
}

TEST_CASE("digest auth: a uri other than the Request-URI -> 400, even with the right response") {
    // RFC 7616 §3.4.6: a response computed over another URI is not for this request.
    Rig rig;
    Challenge c = rig.challenge();
    Answer a = answer_to(c);
    a.uri = "sip:unrelated.invalid;x=1";     // the response is right for this uri and password
    const auto fetches = rig.store.fetches;  // the challenge read the subscriber's algorithms
    auto p = rig.answer(a);
    CHECK(p->code() == 400);
    CHECK(p->msg->reason == "Digest URI Mismatch");
    CHECK(p->challenges().empty());
    CHECK(rig.store.fetches == fetches);  // refused before any store read
    CHECK(rig.stored() == 0);
    CHECK(rig.a().stats.auth_failures.get() == 0);  // a bad request, not a wrong password
    a.uri = "sip:example.com;x=1";  // a parameter the Request-URI lacks is another URI too
    CHECK(rig.answer(a, 3)->code() == 400);
    // An equivalent URI (RFC 3261 §19.1.4: scheme and host case-insensitive) is the same one.
    a.uri = "SIP:Example.COM";
    CHECK(rig.answer(a, 4)->code() == 200);
    CHECK(rig.stored() == 1);
}

TEST_CASE("digest auth: a store that cannot answer -> 503, never 200") {
    Rig rig;
    Challenge c = rig.challenge();
    rig.store.refuse = StoreError::Unavailable;
    auto p = rig.answer(answer_to(c));
    CHECK(p->code() == 503);
    CHECK(rig.stored() == 0);
    CHECK(rig.a()
              .stats.redis_errors[static_cast<std::size_t>(base::RedisErrorKind::Unavailable)]
              .get() == 1);
    // Without credentials the subscriber's algorithms cannot be read either: 503 (the binding
    // could not be stored anyway), never a challenge with guessed algorithms.
    CHECK(rig.send(Reg{})->code() == 503);
}

// Defect 8 (issue 14): baresip 1.0 and SIPp 3.6 give up on a 401 that offers SHA-256 at all, so a
// registrar offering SHA-256 to everyone locks them out. The default is MD5 alone; SHA-256 is per
// subscriber (sip-locctl user add --algorithms, the record's "algorithms" field).
TEST_CASE("digest auth: the default offers MD5 alone, to subscribers without a list") {
    CHECK(DigestConfig{}.algorithms == std::vector<DigestAlgorithm>{DigestAlgorithm::Md5});
    Rig rig([](DigestConfig& c) { c.algorithms = DigestConfig{}.algorithms; });
    auto c = rig.send(Reg{})->challenges();
    REQUIRE(c.size() == 1);
    CHECK(c[0].algorithm == "MD5");
    CHECK(rig.answer(answer_to(c[0]))->code() == 200);
    // An unknown user is challenged alike (the challenge tells nothing about the record).
    Reg nobody;
    nobody.to = "<sip:nobody@example.com>";
    auto u = rig.send(nobody)->challenges();
    REQUIRE(u.size() == 1);
    CHECK(u[0].algorithm == "MD5");
}

TEST_CASE("digest auth: a subscriber's own list orders its challenges and bounds its answers") {
    Rig rig([](DigestConfig& c) { c.algorithms = {DigestAlgorithm::Md5}; });
    SUBCASE("SHA-256,MD5: both, SHA-256 first; either answer registers") {
        rig.store.add_user("sip:alice@example.com", "alice", "example.com", "Circle Of Life",
                           "SHA-256,MD5");
        auto c = rig.send(Reg{})->challenges();
        REQUIRE(c.size() == 2);
        CHECK(c[0].algorithm == "SHA-256");
        CHECK(c[1].algorithm == "MD5");
        CHECK(rig.answer(answer_to(c[0]))->code() == 200);
        Answer md5 = answer_to(c[1]);
        md5.nc = "00000002";  // the one nonce serves both challenges
        CHECK(rig.answer(md5, 3)->code() == 200);
        CHECK(rig.a().stats.auth_failures.get() == 0);
    }
    SUBCASE("SHA-256 alone: an MD5 answer with the right password is refused (no downgrade)") {
        rig.store.add_user("sip:alice@example.com", "alice", "example.com", "Circle Of Life",
                           " sha-256 ");
        auto c = rig.send(Reg{})->challenges();
        REQUIRE(c.size() == 1);
        CHECK(c[0].algorithm == "SHA-256");
        Answer md5 = answer_to(c[0]);
        md5.algorithm = "MD5";
        auto p = rig.answer(md5);
        CHECK(p->code() == 401);
        REQUIRE(p->challenges().size() == 1);
        CHECK(p->challenges()[0].algorithm == "SHA-256");  // re-challenged with its own list
        CHECK(rig.a().stats.auth_failures.get() == 1);
        CHECK(rig.store.failures("sip:alice@example.com") == 1);
        CHECK(rig.answer(answer_to(c[0]), 3)->code() == 200);
    }
    SUBCASE("a list naming nothing known: challenged with the default, never registers") {
        rig.store.add_user("sip:alice@example.com", "alice", "example.com", "Circle Of Life",
                           "SHA-512-256");
        auto c = rig.send(Reg{})->challenges();
        REQUIRE(c.size() == 1);
        CHECK(c[0].algorithm == "MD5");
        CHECK(rig.answer(answer_to(c[0]))->code() == 401);
    }
    // bob has no list: the default.
    Reg bob;
    bob.to = "<sip:bob@example.com>";
    auto b = rig.send(bob)->challenges();
    REQUIRE(b.size() == 1);
    CHECK(b[0].algorithm == "MD5");
}

TEST_CASE("digest auth: successes are counted by algorithm") {
    Rig rig;
    auto& ok = rig.a().stats.auth_successes;
    Reg r;
    auto c = rig.send(r)->challenges();
    REQUIRE(c.size() == 2);
    CHECK(rig.answer(answer_to(c[0]))->code() == 200);  // SHA-256
    CHECK(ok[static_cast<std::size_t>(DigestAlgorithm::Sha256)].get() == 1);
    CHECK(ok[static_cast<std::size_t>(DigestAlgorithm::Md5)].get() == 0);
    Answer md5 = answer_to(c[1]);
    md5.nc = "00000002";  // the one nonce serves both challenges
    CHECK(rig.answer(md5, 3)->code() == 200);
    CHECK(ok[static_cast<std::size_t>(DigestAlgorithm::Md5)].get() == 1);
    Answer wrong = md5;
    wrong.password = "not it";
    wrong.nc = "00000003";
    CHECK(rig.answer(wrong, 4)->code() == 401);
    CHECK(rig.answer(md5, 5)->code() == 401);  // nc 2 again: a replay is no success
    CHECK(ok[static_cast<std::size_t>(DigestAlgorithm::Md5)].get() == 1);
    CHECK(ok[static_cast<std::size_t>(DigestAlgorithm::Sha256)].get() == 1);
    CHECK(std::string(
              registrar::kAuthAlgorithmNames[static_cast<std::size_t>(DigestAlgorithm::Sha256)]) ==
          "SHA-256");
}

TEST_CASE("digest auth: parse_algorithm_list") {
    registrar::AlgorithmList l;
    registrar::parse_algorithm_list("SHA-256,MD5", l);
    REQUIRE(l.size == 2);
    CHECK(l.items[0] == DigestAlgorithm::Sha256);
    CHECK(l.items[1] == DigestAlgorithm::Md5);
    registrar::parse_algorithm_list(" md5 , ,MD5,\tsha-256", l);  // blanks, repeats, empty items
    REQUIRE(l.size == 2);
    CHECK(l.items[0] == DigestAlgorithm::Md5);
    CHECK(l.items[1] == DigestAlgorithm::Sha256);
    registrar::parse_algorithm_list("MD5-sess,SHA-512-256", l);
    CHECK(l.size == 0);
    registrar::parse_algorithm_list("", l);
    CHECK(l.size == 0);
    CHECK_FALSE(l.contains(DigestAlgorithm::Md5));
}

TEST_CASE("digest auth: aor_user / aor_domain") {
    CHECK(registrar::aor_user("sip:alice@example.com") == "alice");
    CHECK(registrar::aor_domain("sip:alice@example.com") == "example.com");
    CHECK(registrar::aor_user("sips:a@b@example.com") == "a@b");
    CHECK(registrar::aor_domain("sips:a@b@example.com") == "example.com");
    CHECK(registrar::aor_user("sip:example.com").empty());
    CHECK(registrar::aor_domain("sip:example.com") == "example.com");
}

TEST_SUITE_END();
