#include "sipr/location/redis_store.h"

#include <openssl/evp.h>

#include <charconv>
#include <chrono>
#include <cstring>

#include "sipr/location/schema.h"

namespace sipr::location {

std::string_view store_error_text(StoreError e) noexcept {
    switch (e) {
        case StoreError::None:
            return "none";
        case StoreError::Unavailable:
            return "unavailable";
        case StoreError::Timeout:
            return "timeout";
        case StoreError::Overloaded:
            return "overloaded";
        case StoreError::Protocol:
            return "protocol";
        case StoreError::Stale:
            return "stale";
        case StoreError::TooManyContacts:
            return "too_many_contacts";
    }
    return "unknown";
}

base::RedisErrorKind redis_error_kind(StoreError e) noexcept {
    switch (e) {
        case StoreError::Timeout:
            return base::RedisErrorKind::Timeout;
        case StoreError::Overloaded:
            return base::RedisErrorKind::Overloaded;
        case StoreError::Protocol:
            return base::RedisErrorKind::Protocol;
        default:
            return base::RedisErrorKind::Unavailable;
    }
}

int64_t system_clock_ms() noexcept {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string script_sha1(std::string_view script) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(script.data(), script.size(), md, &len, EVP_sha1(), nullptr);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out += kHex[md[i] >> 4];
        out += kHex[md[i] & 0xf];
    }
    return out;
}

namespace {

StoreError to_store_error(RedisError e) noexcept {
    switch (e) {
        case RedisError::None:
            return StoreError::None;
        case RedisError::Unavailable:
            return StoreError::Unavailable;
        case RedisError::Overloaded:
            return StoreError::Overloaded;
        case RedisError::Timeout:
            return StoreError::Timeout;
        case RedisError::Disconnected:
            return StoreError::Unavailable;
    }
    return StoreError::Protocol;
}

std::string_view str(const redisReply* r) noexcept {
    return std::string_view(r->str, r->len);
}

bool is_string(const redisReply* r) noexcept {
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

}  // namespace

struct RedisStore::LookupOp {
    RedisStore* store = nullptr;
    LookupCallback cb = nullptr;
    void* ctx = nullptr;
};

struct RedisStore::RegisterOp {
    RedisStore* store = nullptr;
    RegisterCallback cb = nullptr;
    void* ctx = nullptr;
    bool retried = false;
    // Arguments of EVALSHA/EVAL, owned here so they can be sent again after NOSCRIPT.
    std::vector<std::string> args;
};

struct RedisStore::ScriptOp {
    RedisStore* store = nullptr;
    ScriptId id = ScriptId::AuthFetch;
    bool retried = false;
    // KEYS then ARGV; the strings keep their capacity across uses of the pooled op.
    std::array<std::string, 2> keys;
    std::size_t nkeys = 0;
    std::array<std::string, 4> argv;
    std::size_t nargv = 0;
    AuthFetchCallback fetch_cb = nullptr;
    AuthFailureCallback failure_cb = nullptr;
    NonceCountCallback nonce_cb = nullptr;
    void* ctx = nullptr;
};

RedisStore::RedisStore(RedisClient& client, int64_t (*clock_ms)() noexcept)
    : RedisStore(std::make_unique<SingleRoute>(client), nullptr, clock_ms) {}

RedisStore::RedisStore(RedisRoute& route, int64_t (*clock_ms)() noexcept)
    : RedisStore(nullptr, &route, clock_ms) {}

RedisStore::RedisStore(std::unique_ptr<SingleRoute> own, RedisRoute* route,
                       int64_t (*clock_ms)() noexcept)
    : own_route_(std::move(own)),
      route_(route != nullptr ? *route : *own_route_),
      clock_ms_(clock_ms != nullptr ? clock_ms : &system_clock_ms),
      script_sha_(script_sha1(register_script())),
      scripts_{Script{auth_fetch_script(), script_sha1(auth_fetch_script())},
               Script{auth_failure_script(), script_sha1(auth_failure_script())},
               Script{nonce_count_script(), script_sha1(nonce_count_script())}} {
    scratch_.reserve(64);
}

RedisStore::~RedisStore() = default;

StoreError RedisStore::lookup(std::string_view aor, LookupCallback cb, void* ctx) noexcept {
    char key[512];
    std::size_t klen = write_location_key(aor, key, sizeof key);
    if (klen == 0) return StoreError::Protocol;
    LookupOp* op = lookup_ops_.acquire();
    op->store = this;
    op->cb = cb;
    op->ctx = ctx;
    const char* argv[2] = {"HGETALL", key};
    std::size_t lens[2] = {7, klen};
    RedisError err = route_.command(std::string_view(key, klen), true, 2, argv, lens,
                                    &RedisStore::on_lookup, op);
    if (err != RedisError::None) {
        lookup_ops_.release(op);
        return to_store_error(err);
    }
    return StoreError::None;
}

void RedisStore::on_lookup(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* op = static_cast<LookupOp*>(ctx);
    RedisStore* self = op->store;
    LookupCallback cb = op->cb;
    void* user = op->ctx;
    self->lookup_ops_.release(op);

    LookupReply out;
    if (err != RedisError::None) {
        out.error = to_store_error(err);
        cb(user, out);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
        ++self->stats_.protocol_errors;
        out.error = StoreError::Protocol;
        cb(user, out);
        return;
    }
    const int64_t now = self->clock_ms_();
    self->scratch_.clear();
    for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply* v = reply->element[i + 1];
        BindingView b;
        if (!is_string(v) || !unpack_binding(str(v), b)) {
            ++out.garbage;
            continue;
        }
        if (b.expires_at_ms <= now) continue;  // DESIGN §4: an expired binding is never returned
        if (self->scratch_.size() == self->scratch_.capacity()) {
            // Growing allocates; only an AOR with more bindings than ever seen gets here.
            self->scratch_.reserve(self->scratch_.capacity() * 2);
        }
        self->scratch_.push_back(b);
    }
    self->stats_.garbage_bindings += out.garbage;
    out.bindings = self->scratch_;
    cb(user, out);
}

bool RedisStore::must_reload(const redisReply* reply, bool& retried) noexcept {
    // NOSCRIPT: the script cache was flushed (restart, SCRIPT FLUSH, failover); the script is
    // then sent whole, once.
    if (reply->type != REDIS_REPLY_ERROR || retried || str(reply).substr(0, 8) != "NOSCRIPT")
        return false;
    retried = true;
    ++stats_.script_reloads;
    return true;
}

StoreError RedisStore::apply_register(const RegisterChanges& ch, RegisterCallback cb,
                                      void* ctx) noexcept {
    if (!route_.ready()) return StoreError::Unavailable;
    auto* op = new RegisterOp;
    op->store = this;
    op->cb = cb;
    op->ctx = ctx;
    register_script_args(ch, delivery_, op->args);
    StoreError e = send_register(op, false);
    if (e != StoreError::None) delete op;
    return e;
}

StoreError RedisStore::send_register(RegisterOp* op, bool full_script) noexcept {
    // EVALSHA <sha> <numkeys> <keys...> <argv...>  or  EVAL <script> <numkeys> ...
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(op->args.size() + 3);
    lens.reserve(op->args.size() + 3);
    std::string_view script = register_script();
    if (full_script) {
        argv.push_back("EVAL");
        lens.push_back(4);
        argv.push_back(script.data());
        lens.push_back(script.size());
    } else {
        argv.push_back("EVALSHA");
        lens.push_back(7);
        argv.push_back(script_sha_.data());
        lens.push_back(script_sha_.size());
    }
    for (const std::string& a : op->args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    RedisError err = route_.command(op->args[1], false, static_cast<int>(argv.size()), argv.data(),
                                    lens.data(), &RedisStore::on_register, op);
    return to_store_error(err);
}

void RedisStore::on_register(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* op = static_cast<RegisterOp*>(ctx);
    RedisStore* self = op->store;
    RegisterReply out;
    if (err != RedisError::None) {
        out.error = to_store_error(err);
    } else if (self->must_reload(reply, op->retried)) {
        StoreError again = self->send_register(op, true);
        if (again == StoreError::None) return;
        out.error = again;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        std::string_view e = str(reply);
        if (e.find("STALE") != std::string_view::npos) {
            out.error = StoreError::Stale;
        } else if (e.find("TOOMANY") != std::string_view::npos) {
            out.error = StoreError::TooManyContacts;
        } else {
            ++self->stats_.protocol_errors;
            out.error = StoreError::Protocol;
        }
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 1 ||
               reply->element[0]->type != REDIS_REPLY_INTEGER) {
        ++self->stats_.protocol_errors;
        out.error = StoreError::Protocol;
    } else {
        out.now_ms = reply->element[0]->integer;
        self->scratch_.clear();
        for (std::size_t i = 1; i + 1 < reply->elements; i += 2) {
            const redisReply* v = reply->element[i + 1];
            BindingView b;
            if (!is_string(v) || !unpack_binding(str(v), b)) {
                ++self->stats_.garbage_bindings;
                continue;
            }
            self->scratch_.push_back(b);
        }
        out.bindings = self->scratch_;
    }
    RegisterCallback cb = op->cb;
    void* user = op->ctx;
    delete op;
    cb(user, out);
}

// ------------------------------------------------------------------------------------------------
// AuthStore

namespace {

// Decimal text of `v` into `out` (which keeps its capacity): no allocation once warm.
void assign_uint(std::string& out, uint64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.assign(buf, static_cast<std::size_t>(r.ptr - buf));
}

// "<prefix>{<aor>}<suffix>" into `out`.
void assign_key(std::string& out, std::string_view prefix, std::string_view aor,
                std::string_view suffix = {}) {
    out.assign(prefix);
    out += '{';
    out.append(aor);
    out += '}';
    out.append(suffix);
}

}  // namespace

RedisStore::ScriptOp* RedisStore::acquire_script_op() noexcept {
    ScriptOp* op = script_ops_.acquire();
    op->store = this;
    return op;
}

void RedisStore::release_script_op(ScriptOp* op) noexcept {
    op->fetch_cb = nullptr;
    op->failure_cb = nullptr;
    op->nonce_cb = nullptr;
    script_ops_.release(op);
}

StoreError RedisStore::start_script(ScriptOp* op) noexcept {
    op->retried = false;
    StoreError e = send_script(op, false);
    if (e != StoreError::None) release_script_op(op);
    return e;
}

StoreError RedisStore::send_script(ScriptOp* op, bool full_script) noexcept {
    // EVALSHA <sha> <nkeys> <keys...> <argv...>  or  EVAL <script> ...
    const Script& s = scripts_[static_cast<std::size_t>(op->id)];
    std::array<const char*, 12> argv{};
    std::array<std::size_t, 12> lens{};
    std::size_t n = 0;
    auto push = [&](std::string_view a) {
        argv[n] = a.data();
        lens[n] = a.size();
        ++n;
    };
    push(full_script ? std::string_view("EVAL") : std::string_view("EVALSHA"));
    push(full_script ? s.text : std::string_view(s.sha));
    const char nkeys[2] = {static_cast<char>('0' + op->nkeys), '\0'};
    push(std::string_view(nkeys, 1));
    for (std::size_t i = 0; i < op->nkeys; ++i) push(op->keys[i]);
    for (std::size_t i = 0; i < op->nargv; ++i) push(op->argv[i]);
    return to_store_error(route_.command(op->keys[0], false, static_cast<int>(n), argv.data(),
                                         lens.data(), &RedisStore::on_script, op));
}

void RedisStore::on_script(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* op = static_cast<ScriptOp*>(ctx);
    RedisStore* self = op->store;
    if (err != RedisError::None) {
        self->finish_script(op, to_store_error(err), nullptr);
        return;
    }
    if (self->must_reload(reply, op->retried)) {
        StoreError again = self->send_script(op, true);
        if (again == StoreError::None) return;
        self->finish_script(op, again, nullptr);
        return;
    }
    self->finish_script(op, StoreError::None, reply);
}

void RedisStore::finish_script(ScriptOp* op, StoreError err, const redisReply* reply) noexcept {
    // Hand the op back before calling out: the callback may start the next operation.
    const ScriptId id = op->id;
    AuthFetchCallback fetch_cb = op->fetch_cb;
    AuthFailureCallback failure_cb = op->failure_cb;
    NonceCountCallback nonce_cb = op->nonce_cb;
    void* user = op->ctx;
    release_script_op(op);

    const bool error_reply = err == StoreError::None && reply->type == REDIS_REPLY_ERROR;
    if (error_reply) {
        ++stats_.protocol_errors;
        err = StoreError::Protocol;
    }
    switch (id) {
        case ScriptId::AuthFetch: {
            AuthFetchReply out;
            out.error = err;
            if (err == StoreError::None) {
                if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 1 ||
                    reply->element[0]->type != REDIS_REPLY_INTEGER ||
                    reply->element[0]->integer < 0) {
                    ++stats_.protocol_errors;
                    out.error = StoreError::Protocol;
                } else {
                    long long f = reply->element[0]->integer;
                    out.failures = f > 0xffffffffLL ? 0xffffffffU : static_cast<uint32_t>(f);
                    Credentials& c = out.credentials;
                    c.found = reply->elements > 1;
                    c.enabled = true;
                    for (std::size_t i = 1; i + 1 < reply->elements; i += 2) {
                        const redisReply* k = reply->element[i];
                        const redisReply* v = reply->element[i + 1];
                        if (!is_string(k) || !is_string(v)) continue;
                        std::string_view name = str(k);
                        if (name == "ha1-md5")
                            c.ha1_md5 = str(v);
                        else if (name == "ha1-sha256")
                            c.ha1_sha256 = str(v);
                        else if (name == "enabled")
                            c.enabled = str(v) != "0";
                        else if (name == "realm")
                            c.realm = str(v);
                        else if (name == "algorithms")
                            c.algorithms = str(v);
                    }
                }
            }
            fetch_cb(user, out);
            return;
        }
        case ScriptId::AuthFailure: {
            AuthFailureReply out;
            out.error = err;
            if (err == StoreError::None) {
                if (reply->type != REDIS_REPLY_INTEGER || reply->integer < 0) {
                    ++stats_.protocol_errors;
                    out.error = StoreError::Protocol;
                } else {
                    out.failures = reply->integer > 0xffffffffLL
                                       ? 0xffffffffU
                                       : static_cast<uint32_t>(reply->integer);
                }
            }
            failure_cb(user, out);
            return;
        }
        case ScriptId::NonceCount: {
            NonceCountReply out;
            out.error = err;
            if (err == StoreError::None) {
                // {1, 0} fresh, {2, first_used_ms} the same request, {0, 0} a replay.
                if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
                    reply->element[0]->type != REDIS_REPLY_INTEGER ||
                    reply->element[1]->type != REDIS_REPLY_INTEGER) {
                    ++stats_.protocol_errors;
                    out.error = StoreError::Protocol;
                } else {
                    out.fresh = reply->element[0]->integer == 1;
                    out.same_request = reply->element[0]->integer == 2;
                    out.first_used_ms = out.same_request ? reply->element[1]->integer : 0;
                }
            }
            nonce_cb(user, out);
            return;
        }
    }
}

template <typename Fill>
StoreError RedisStore::launch_script(ScriptId id, std::size_t nkeys, std::size_t nargv, void* ctx,
                                     Fill&& fill) noexcept {
    if (!route_.ready()) return StoreError::Unavailable;
    ScriptOp* op = acquire_script_op();
    fill(*op);  // keys, argv and the callback
    op->id = id;
    op->nkeys = nkeys;
    op->nargv = nargv;
    op->ctx = ctx;
    return start_script(op);
}

StoreError RedisStore::fetch_auth(std::string_view aor, std::string_view source,
                                  AuthFetchCallback cb, void* ctx) noexcept {
    return launch_script(ScriptId::AuthFetch, 2, 0, ctx, [&](ScriptOp& op) {
        assign_key(op.keys[0], kSubscriberPrefix, aor);
        assign_key(op.keys[1], kAuthFailPrefix, aor, ":");
        op.keys[1].append(source);
        op.fetch_cb = cb;
    });
}

StoreError RedisStore::record_auth_failure(std::string_view aor, std::string_view source,
                                           const AuthFailurePolicy& policy, AuthFailureCallback cb,
                                           void* ctx) noexcept {
    return launch_script(ScriptId::AuthFailure, 2, 3, ctx, [&](ScriptOp& op) {
        assign_key(op.keys[0], kAuthFailPrefix, aor, ":");
        op.keys[0].append(source);
        assign_key(op.keys[1], kSubscriberPrefix, aor);
        assign_uint(op.argv[0], policy.window_s);
        assign_uint(op.argv[1], policy.limit);
        assign_uint(op.argv[2], policy.cooldown_s);
        op.failure_cb = cb;
    });
}

StoreError RedisStore::advance_nonce_count(std::string_view aor, std::string_view nonce,
                                           uint32_t nc, uint32_t ttl_s,
                                           std::string_view fingerprint, int64_t now_ms,
                                           NonceCountCallback cb, void* ctx) noexcept {
    return launch_script(ScriptId::NonceCount, 2, 4, ctx, [&](ScriptOp& op) {
        assign_key(op.keys[0], kNonceCountPrefix, aor, ":");
        op.keys[0].append(nonce);
        assign_key(op.keys[1], kNonceRequestPrefix, aor, ":");
        op.keys[1].append(nonce);
        assign_uint(op.argv[0], nc);
        assign_uint(op.argv[1], ttl_s == 0 ? 1 : ttl_s);
        op.argv[2].assign(fingerprint);
        assign_uint(op.argv[3], now_ms < 0 ? 0 : static_cast<uint64_t>(now_ms));
        op.nonce_cb = cb;
    });
}

}  // namespace sipr::location
