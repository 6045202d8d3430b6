#include "sipr/location/admin.h"

#include "sipr/location/redis_cluster.h"
#include "sipr/location/redis_store.h"
#include "sipr/location/schema.h"
#include "sync_redis.h"

#include <algorithm>
#include <charconv>

namespace sipr::location {

namespace {

std::string refused(std::string_view command, std::string_view why) {
    return "Redis refused " + std::string(command) + ": " + std::string(why);
}

// EVAL <script> <numkeys> <keys...> <argv...> for `changes`, as views of `args` (which must
// outlive them).
std::vector<std::string_view> eval_register(std::string_view verb, std::string_view script,
                                            const std::vector<std::string>& args) {
    std::vector<std::string_view> v{verb, script};
    v.insert(v.end(), args.begin(), args.end());
    return v;
}

}  // namespace

Admin::Admin() = default;
Admin::~Admin() = default;

std::string Admin::open(const RedisUrl& node, bool cluster, uint32_t timeout_ms) {
    node_ = node;
    cluster_ = cluster;
    timeout_ms_ = timeout_ms;
    c_ = std::make_unique<SyncRedis>();
    std::string why;
    switch (c_->open(node_, timeout_ms_, why)) {
        case SyncRedis::Opened::Ok:
            return {};
        case SyncRedis::Opened::Unreachable:
            return "cannot reach Redis at " + redacted(node_);
        case SyncRedis::Opened::AuthRefused:
            return refused("AUTH", why);
        case SyncRedis::Opened::SelectRefused:
            return refused("SELECT", why);
    }
    return {};
}

template <typename Use>
std::string Admin::run(std::span<const std::string_view> args, std::string_view /*key*/,
                       Use&& use) {
    RedisUrl at = node_;
    for (int hop = 0;; ++hop) {
        SyncReply r = c_->run(args.data(), args.size());
        if (r.get() == nullptr) return "Redis: " + c_->errstr();
        if (r->type != REDIS_REPLY_ERROR) {
            use(r.get());
            return {};
        }
        std::string e = r.error(*c_);
        ClusterRedirect to;
        if (!cluster_ || hop >= 5 || !parse_cluster_redirect(e, to)) return refused(args[0], e);
        if (!to.to.host.empty()) at.host = to.to.host;
        at.port = to.to.port;
        c_ = std::make_unique<SyncRedis>();
        std::string why;
        if (c_->open(at, timeout_ms_, why) != SyncRedis::Opened::Ok)
            return "cannot reach Redis at " + redacted(at);
        if (to.ask) {
            SyncReply a = c_->run({"ASKING"});
            if (!a.ok()) return refused("ASKING", a.error(*c_));
        }
    }
}

std::string Admin::bindings(std::string_view aor, std::vector<StoredBinding>& out,
                            std::size_t& garbage) {
    const std::string key = location_key(aor);
    const std::string_view args[] = {"HGETALL", key};
    garbage = 0;
    return run(args, key, [&](const redisReply* rep) {
        for (std::size_t i = 0; i + 1 < rep->elements; i += 2) {
            BindingView v;
            std::string_view packed(rep->element[i + 1]->str, rep->element[i + 1]->len);
            if (!unpack_binding(packed, v)) {
                ++garbage;
                continue;
            }
            out.push_back({std::string(rep->element[i]->str, rep->element[i]->len), to_binding(v)});
        }
    });
}

std::string Admin::apply(const RegisterChanges& changes) {
    long long after = 0;
    return apply(changes, after);
}

std::string Admin::apply(const RegisterChanges& changes, long long& after) {
    std::vector<std::string> args;
    register_script_args(changes, delivery(), args);
    const std::vector<std::string_view> argv = eval_register("EVAL", register_script(), args);
    return run(argv, args[1], [&](const redisReply* r) {
        after = r->type == REDIS_REPLY_ARRAY ? static_cast<long long>(r->elements / 2) : 0;
    });
}

std::string Admin::apply_many(std::span<const RegisterChanges> batch) {
    const std::string sha = script_sha1(register_script());
    {
        SyncReply r = c_->run({"SCRIPT", "LOAD", register_script()});
        if (!r.ok()) return refused("SCRIPT", r.error(*c_));
    }
    constexpr std::size_t kChunk = 1000;
    std::vector<std::string> args;
    for (std::size_t first = 0; first < batch.size(); first += kChunk) {
        const std::size_t last = std::min(batch.size(), first + kChunk);
        for (std::size_t i = first; i < last; ++i) {
            args.clear();
            register_script_args(batch[i], delivery(), args);
            const std::vector<std::string_view> argv = eval_register("EVALSHA", sha, args);
            if (!c_->append(argv.data(), argv.size())) return "Redis: " + c_->errstr();
        }
        for (std::size_t i = first; i < last; ++i) {
            SyncReply r = c_->next_reply();
            if (r.get() == nullptr) return "Redis connection lost";
            if (!r.ok()) return refused("EVALSHA", r.error(*c_));
        }
    }
    return {};
}

std::string Admin::remove_bindings(std::string_view aor, std::span<const std::string> keys,
                                   long long& removed) {
    // Through register.lua, so the removal publishes its event and keeps the counts (README
    // "Events"); `removed` is what was stored before less what is left.
    std::vector<StoredBinding> before;
    std::size_t garbage = 0;
    if (std::string why = bindings(aor, before, garbage); !why.empty()) return why;
    RegisterChanges ch;
    ch.aor = std::string(aor);
    ch.by_operator = true;
    ch.call_id = "sip-locctl";
    ch.max_contacts = 100000;
    ch.remove_all = keys.empty();
    for (const std::string& k : keys) ch.contacts.push_back(ContactChange{k, 0, {}});
    long long after = 0;
    if (std::string why = apply(ch, after); !why.empty()) return why;
    removed = std::max(0LL, static_cast<long long>(before.size()) - after);
    return {};
}

std::string Admin::read_events(
    std::string& last_id, uint32_t block_ms,
    const std::function<void(std::string_view,
                             const std::vector<std::pair<std::string, std::string>>&)>& use) {
    if (last_id == "$") {
        // "$" anew on every call would miss what came between two calls: the stream's last ID
        // now ("0-0" while it is empty) instead.
        const std::string_view last[] = {"XREVRANGE", kEventsKey, "+", "-", "COUNT", "1"};
        std::string why = run(last, kEventsKey, [&](const redisReply* r) {
            last_id = "0-0";
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
                r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements >= 1)
                last_id.assign(r->element[0]->element[0]->str, r->element[0]->element[0]->len);
        });
        if (!why.empty()) return why;
    }
    const std::string block = std::to_string(block_ms);
    const std::string_view args[] = {"XREAD", "COUNT",   "1000",     "BLOCK",
                                     block,   "STREAMS", kEventsKey, last_id};
    std::vector<std::pair<std::string, std::string>> fields;
    return run(args, kEventsKey, [&](const redisReply* r) {
        // nil: nothing within block_ms; else [[stream, [[id, [f, v, ...]], ...]]].
        if (r->type != REDIS_REPLY_ARRAY) return;
        for (std::size_t s = 0; s < r->elements; ++s) {
            const redisReply* stream = r->element[s];
            if (stream->type != REDIS_REPLY_ARRAY || stream->elements < 2) continue;
            const redisReply* entries = stream->element[1];
            for (std::size_t e = 0; e < entries->elements; ++e) {
                const redisReply* entry = entries->element[e];
                if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 2) continue;
                last_id.assign(entry->element[0]->str, entry->element[0]->len);
                fields.clear();
                const redisReply* kv = entry->element[1];
                for (std::size_t i = 0; i + 1 < kv->elements; i += 2)
                    fields.emplace_back(
                        std::string(kv->element[i]->str, kv->element[i]->len),
                        std::string(kv->element[i + 1]->str, kv->element[i + 1]->len));
                use(last_id, fields);
            }
        }
    });
}

namespace {

// A stream ID "ms-seq" (or "ms") as a pair; {0, 0} when it is not one.
std::pair<uint64_t, uint64_t> stream_id(std::string_view id) {
    uint64_t ms = 0, seq = 0;
    const std::size_t dash = id.find('-');
    const std::string_view a = id.substr(0, dash);
    auto r = std::from_chars(a.data(), a.data() + a.size(), ms);
    if (r.ec != std::errc{}) return {0, 0};
    if (dash != std::string_view::npos) {
        const std::string_view b = id.substr(dash + 1);
        std::from_chars(b.data(), b.data() + b.size(), seq);
    }
    return {ms, seq};
}

}  // namespace

std::string Admin::events_trimmed_after(std::string_view id, bool& trimmed) {
    trimmed = false;
    const std::string_view args[] = {"XINFO", "STREAM", kEventsKey};
    long long length = 0, added = 0;
    std::string first, last;
    std::string why = run(args, kEventsKey, [&](const redisReply* r) {
        if (r->type != REDIS_REPLY_ARRAY) return;
        for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply* k = r->element[i];
            const redisReply* v = r->element[i + 1];
            if (k->type != REDIS_REPLY_STRING) continue;
            const std::string_view name(k->str, k->len);
            if (name == "length" && v->type == REDIS_REPLY_INTEGER) length = v->integer;
            if (name == "entries-added" && v->type == REDIS_REPLY_INTEGER) added = v->integer;
            if (name == "last-generated-id" && v->type == REDIS_REPLY_STRING)
                last.assign(v->str, v->len);
            if (name == "first-entry" && v->type == REDIS_REPLY_ARRAY && v->elements >= 1 &&
                v->element[0]->type == REDIS_REPLY_STRING)
                first.assign(v->element[0]->str, v->element[0]->len);
        }
    });
    // No stream yet: nothing was trimmed.
    if (!why.empty() && why.find("no such key") != std::string::npos) return {};
    if (!why.empty()) return why;
    // Entries were removed (MAXLEN ~ trims the oldest) and the oldest still held comes after
    // `id`: some between them may be gone. Redis 7.0 keeps no ID of what trimming removed, so
    // this errs on the side of a rescan.
    trimmed = added > length && stream_id(id) < stream_id(length > 0 ? first : last);
    return {};
}

std::string Admin::subscribe_events() {
    const std::string_view args[] = {"SUBSCRIBE", kEventsChannel};
    return run(args, kEventsChannel, [](const redisReply*) {});
}

std::string Admin::next_message(uint32_t wait_ms, std::string& out) {
    out.clear();
    bool timed_out = false;
    SyncReply r = c_->next_push(wait_ms, timed_out);
    if (timed_out) return {};
    if (r.get() == nullptr) return "Redis: " + c_->errstr();
    // ["message", channel, payload]
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_STRING)
        out.assign(r->element[2]->str, r->element[2]->len);
    return {};
}

std::string Admin::put_subscriber(std::string_view aor, const SubscriberRecord& rec) {
    const std::string key = subscriber_key(aor);
    const std::string_view set[] = {"HSET",         key,       "ha1-md5", rec.ha1_md5, "ha1-sha256",
                                    rec.ha1_sha256, "enabled", "1",       "realm",     rec.realm};
    if (std::string why = run(set, key, [](const redisReply*) {}); !why.empty()) return why;
    // "add or replace": a record written again without algorithms goes back to the registrar's
    // --auth-algorithms.
    if (rec.algorithms.empty()) {
        const std::string_view del[] = {"HDEL", key, "algorithms"};
        return run(del, key, [](const redisReply*) {});
    }
    const std::string_view alg[] = {"HSET", key, "algorithms", rec.algorithms};
    return run(alg, key, [](const redisReply*) {});
}

std::string Admin::delete_subscriber(std::string_view aor, bool& existed) {
    const std::string key = subscriber_key(aor);
    const std::string_view args[] = {"DEL", key};
    return run(args, key, [&](const redisReply* r) { existed = r->integer != 0; });
}

}  // namespace sipr::location
