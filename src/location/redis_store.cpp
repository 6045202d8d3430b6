#include "sipr/location/redis_store.h"

#include <openssl/evp.h>

#include <chrono>
#include <cstring>

#include "sipr/location/schema.h"

namespace sipr::location {

std::string_view store_error_text(StoreError e) noexcept {
    switch (e) {
        case StoreError::None: return "none";
        case StoreError::Unavailable: return "unavailable";
        case StoreError::Timeout: return "timeout";
        case StoreError::Overloaded: return "overloaded";
        case StoreError::Protocol: return "protocol";
        case StoreError::Stale: return "stale";
        case StoreError::TooManyContacts: return "too_many_contacts";
    }
    return "unknown";
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
        case RedisError::None: return StoreError::None;
        case RedisError::Unavailable: return StoreError::Unavailable;
        case RedisError::Overloaded: return StoreError::Overloaded;
        case RedisError::Timeout: return StoreError::Timeout;
        case RedisError::Disconnected: return StoreError::Unavailable;
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

struct RedisStore::CredentialsOp {
    RedisStore* store = nullptr;
    CredentialsCallback cb = nullptr;
    void* ctx = nullptr;
};

RedisStore::RedisStore(RedisClient& client, int64_t (*clock_ms)() noexcept)
    : client_(client),
      clock_ms_(clock_ms != nullptr ? clock_ms : &system_clock_ms),
      script_sha_(script_sha1(register_script())) {
    scratch_.reserve(64);
}

RedisStore::~RedisStore() = default;

StoreError RedisStore::lookup(std::string_view aor, LookupCallback cb, void* ctx) noexcept {
    char key[512];
    std::size_t klen = write_location_key(aor, key, sizeof key);
    if (klen == 0) return StoreError::Protocol;
    LookupOp* op;
    if (!lookup_free_.empty()) {
        op = lookup_free_.back();
        lookup_free_.pop_back();
    } else {
        auto fresh = std::unique_ptr<LookupOp>(new (std::nothrow) LookupOp);
        if (!fresh) return StoreError::Overloaded;
        op = fresh.get();
        lookup_pool_.push_back(std::move(fresh));
    }
    op->store = this;
    op->cb = cb;
    op->ctx = ctx;
    const char* argv[2] = {"HGETALL", key};
    std::size_t lens[2] = {7, klen};
    RedisError err = client_.command(2, argv, lens, &RedisStore::on_lookup, op);
    if (err != RedisError::None) {
        lookup_free_.push_back(op);
        return to_store_error(err);
    }
    return StoreError::None;
}

void RedisStore::on_lookup(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* op = static_cast<LookupOp*>(ctx);
    RedisStore* self = op->store;
    LookupCallback cb = op->cb;
    void* user = op->ctx;
    self->lookup_free_.push_back(op);

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

StoreError RedisStore::apply_register(const RegisterChanges& ch, RegisterCallback cb,
                                      void* ctx) noexcept {
    if (!client_.ready()) return StoreError::Unavailable;
    auto* op = new (std::nothrow) RegisterOp;
    if (op == nullptr) return StoreError::Overloaded;
    op->store = this;
    op->cb = cb;
    op->ctx = ctx;
    try {
        op->args.reserve(8 + 3 * ch.contacts.size());
        op->args.emplace_back(location_key(ch.aor));
        op->args.emplace_back(std::to_string(ch.max_contacts));
        op->args.emplace_back(ch.evict_oldest ? "1" : "0");
        op->args.emplace_back(ch.remove_all ? "1" : "0");
        op->args.emplace_back(ch.call_id);
        op->args.emplace_back(std::to_string(ch.cseq));
        for (const ContactChange& c : ch.contacts) {
            op->args.emplace_back(c.key);
            op->args.emplace_back(std::to_string(c.expires_s));
            op->args.emplace_back(c.tail);
        }
    } catch (...) {  // std::bad_alloc: answer 503 rather than die
        delete op;
        return StoreError::Overloaded;
    }
    StoreError e = send_register(op, false);
    if (e != StoreError::None) delete op;
    return e;
}

StoreError RedisStore::send_register(RegisterOp* op, bool full_script) noexcept {
    // EVALSHA <sha> 1 <key> <argv...>  or  EVAL <script> 1 <key> <argv...>
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    try {
        argv.reserve(op->args.size() + 3);
        lens.reserve(op->args.size() + 3);
    } catch (...) {
        return StoreError::Overloaded;
    }
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
    argv.push_back("1");
    lens.push_back(1);
    for (const std::string& a : op->args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    RedisError err = client_.command(static_cast<int>(argv.size()), argv.data(), lens.data(),
                                     &RedisStore::on_register, op);
    return to_store_error(err);
}

void RedisStore::on_register(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* op = static_cast<RegisterOp*>(ctx);
    RedisStore* self = op->store;
    RegisterReply out;
    if (err != RedisError::None) {
        out.error = to_store_error(err);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        std::string_view e = str(reply);
        if (e.substr(0, 8) == "NOSCRIPT" && !op->retried) {
            // The script cache was flushed (restart, SCRIPT FLUSH, failover): send it whole.
            op->retried = true;
            ++self->stats_.script_reloads;
            StoreError again = self->send_register(op, true);
            if (again == StoreError::None) return;
            out.error = again;
        } else if (e.find("STALE") != std::string_view::npos) {
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

StoreError RedisStore::credentials(std::string_view aor, CredentialsCallback cb, void* ctx) noexcept {
    auto* op = new (std::nothrow) CredentialsOp{this, cb, ctx};
    if (op == nullptr) return StoreError::Overloaded;
    std::string key;
    try {
        key = subscriber_key(aor);
    } catch (...) {
        delete op;
        return StoreError::Overloaded;
    }
    const char* argv[2] = {"HGETALL", key.c_str()};
    std::size_t lens[2] = {7, key.size()};
    RedisError err = client_.command(2, argv, lens, &RedisStore::on_credentials, op);
    if (err != RedisError::None) {
        delete op;
        return to_store_error(err);
    }
    return StoreError::None;
}

void RedisStore::on_credentials(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* op = static_cast<CredentialsOp*>(ctx);
    CredentialsReply out;
    if (err != RedisError::None) {
        out.error = to_store_error(err);
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
        ++op->store->stats_.protocol_errors;
        out.error = StoreError::Protocol;
    } else {
        out.credentials.found = reply->elements > 0;
        out.credentials.enabled = true;
        for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
            const redisReply* k = reply->element[i];
            const redisReply* v = reply->element[i + 1];
            if (!is_string(k) || !is_string(v)) continue;
            std::string_view name = str(k);
            if (name == "ha1-md5") out.credentials.ha1_md5 = str(v);
            else if (name == "ha1-sha256") out.credentials.ha1_sha256 = str(v);
            else if (name == "enabled") out.credentials.enabled = str(v) != "0";
        }
    }
    CredentialsCallback cb = op->cb;
    void* user = op->ctx;
    delete op;
    cb(user, out);
}

}  // namespace sipr::location
