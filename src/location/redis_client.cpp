#include "sipr/location/redis_client.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <new>

#include "reply_pool.h"
#include "sipr/base/ascii.h"

namespace sipr::location {

namespace {
constexpr std::size_t kHandshakeSlots = 7;  // AUTH, SELECT, CLIENT SETNAME, CLIENT ID, ROLE, PING
}

std::size_t format_resp(int argc, const char* const* argv, const std::size_t* lens, char* out,
                        std::size_t cap) noexcept {
    std::size_t n = 0;
    auto put = [&](char c) {
        if (n < cap) out[n] = c;
        ++n;
    };
    auto put_num = [&](std::size_t v) {
        char digits[20];
        std::size_t k = 0;
        do {
            digits[k++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (k != 0) put(digits[--k]);
    };
    if (argc <= 0) return 0;
    put('*');
    put_num(static_cast<std::size_t>(argc));
    put('\r');
    put('\n');
    for (int i = 0; i < argc; ++i) {
        put('$');
        put_num(lens[i]);
        put('\r');
        put('\n');
        if (n + lens[i] <= cap) std::memcpy(out + n, argv[i], lens[i]);
        n += lens[i];
        put('\r');
        put('\n');
    }
    // hiredis's redisAsyncFormattedCommand reads the command as a C string: it looks one byte
    // past the first argument and, for SUBSCRIBE, walks every argument with strchr.
    if (n + 1 > cap) return 0;
    out[n] = '\0';
    return n;
}

// hiredis's event hooks on one uv_poll, written for the hot path (hiredis's own libuv adapter
// restarts the poll, i.e. calls epoll_ctl, on every command and every reply):
// - the poll is restarted only when the wanted events change;
// - once connected, a write request is not armed at all: the client's prepare handle writes the
//   output buffer right before the loop next waits, so all commands of one loop turn share one
//   write(2); only a write that could not finish arms POLLOUT.
struct RedisClient::Events {
    redisAsyncContext* ac = nullptr;
    RedisClient* owner = nullptr;
    uv_poll_t poll{};
    int armed = 0;  // events the poll was started with
    int want = 0;
    bool write_due = false;  // a write deferred to the prepare phase

    void apply() noexcept {
        if (want == armed) return;
        if (want == 0)
            uv_poll_stop(&poll);
        else
            uv_poll_start(&poll, want, &Events::on_poll);
        armed = want;
    }
    static void on_poll(uv_poll_t* h, int status, int events) {
        auto* e = static_cast<Events*>(h->data);
        if (status != 0) events = UV_READABLE;  // let hiredis meet the error on read
        if (e->ac != nullptr && (events & UV_READABLE) != 0) redisAsyncHandleRead(e->ac);
        if (e->ac != nullptr && (events & UV_WRITABLE) != 0) redisAsyncHandleWrite(e->ac);
    }
    static void add_read(void* p) {
        auto* e = static_cast<Events*>(p);
        e->want |= UV_READABLE;
        e->apply();
    }
    static void del_read(void* p) {
        auto* e = static_cast<Events*>(p);
        e->want &= ~UV_READABLE;
        e->apply();
    }
    static void add_write(void* p) {
        auto* e = static_cast<Events*>(p);
        if ((e->ac->c.flags & REDIS_CONNECTED) != 0 && !e->owner->flushing_) {
            e->write_due = true;
            return;
        }
        e->want |= UV_WRITABLE;  // connecting, or a flush that could not write everything
        e->apply();
    }
    static void del_write(void* p) {
        auto* e = static_cast<Events*>(p);
        e->want &= ~UV_WRITABLE;
        e->apply();
    }
    static void cleanup(void* p) {
        auto* e = static_cast<Events*>(p);
        e->ac = nullptr;
        uv_close(reinterpret_cast<uv_handle_t*>(&e->poll),
                 [](uv_handle_t* h) { delete static_cast<Events*>(h->data); });
    }
    static bool attach(redisAsyncContext* ac, uv_loop_t* loop, RedisClient* owner) noexcept {
        auto* e = new Events;
        if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
            delete e;
            return false;
        }
        e->ac = ac;
        e->owner = owner;
        e->poll.data = e;
        ac->ev.data = e;
        ac->ev.addRead = &Events::add_read;
        ac->ev.delRead = &Events::del_read;
        ac->ev.addWrite = &Events::add_write;
        ac->ev.delWrite = &Events::del_write;
        ac->ev.cleanup = &Events::cleanup;
        return true;
    }
};

void RedisClient::flush_writes() noexcept {
    if (ac_ == nullptr) return;
    auto* e = static_cast<Events*>(ac_->ev.data);
    if (e == nullptr || !e->write_due) return;
    e->write_due = false;
    flushing_ = true;
    redisAsyncHandleWrite(ac_);  // may disconnect: on_disconnect clears ac_
    flushing_ = false;
}

bool parse_redis_url(std::string_view url, RedisUrl& out, std::string& error) {
    out = RedisUrl{};
    constexpr std::string_view kScheme = "redis://";
    if (url.substr(0, kScheme.size()) != kScheme) {
        // Quote what was written, less anything before an '@' (a password without a scheme).
        std::size_t at = url.rfind('@');
        std::string shown =
            at == std::string_view::npos ? std::string(url) : "***" + std::string(url.substr(at));
        error = "Redis URL must start with redis:// (got '" + shown + "')";
        return false;
    }
    std::string_view rest = url.substr(kScheme.size());
    // The authority ends at the first '/' after the user info: a password may hold a '/' (and it
    // must never be quoted back as a bad database number).
    std::size_t userinfo_end = rest.rfind('@');
    std::size_t slash =
        rest.find('/', userinfo_end == std::string_view::npos ? 0 : userinfo_end + 1);
    std::string_view authority = rest.substr(0, slash);
    if (slash != std::string_view::npos) {
        std::string_view db = rest.substr(slash + 1);
        if (!db.empty()) {
            auto [p, ec] = std::from_chars(db.data(), db.data() + db.size(), out.db);
            if (ec != std::errc() || p != db.data() + db.size()) {
                error = "Redis URL database must be a number (got '" + std::string(db) + "')";
                return false;
            }
        }
    }
    std::size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
        std::string_view userinfo = authority.substr(0, at);
        std::size_t colon = userinfo.find(':');
        if (colon == std::string_view::npos) {
            out.password = userinfo;  // redis://password@host, as some tools write it
        } else {
            out.user = userinfo.substr(0, colon);
            out.password = userinfo.substr(colon + 1);
        }
        authority = authority.substr(at + 1);
    }
    std::string_view host = authority, port;
    if (!authority.empty() && authority[0] == '[') {
        std::size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            error = "Redis URL has an unterminated IPv6 address";
            return false;
        }
        host = authority.substr(1, close - 1);
        if (close + 1 < authority.size()) {
            if (authority[close + 1] != ':') {
                error = "Redis URL: expected ':' after ']'";
                return false;
            }
            port = authority.substr(close + 2);
        }
    } else if (authority.find(':') != authority.rfind(':')) {
        error = "Redis URL: put an IPv6 address in brackets, e.g. redis://[::1]:6379";
        return false;
    } else if (std::size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
        host = authority.substr(0, colon);
        port = authority.substr(colon + 1);
    }
    if (host.empty()) {
        error = "Redis URL has no host";
        return false;
    }
    out.host = host == "localhost" ? "127.0.0.1" : std::string(host);
    if (!port.empty()) {
        uint32_t p = 0;
        auto [e, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
        if (ec != std::errc() || e != port.data() + port.size() || p == 0 || p > 65535) {
            error = "Redis URL port must be 1-65535 (got '" + std::string(port) + "')";
            return false;
        }
        out.port = static_cast<uint16_t>(p);
    }
    return true;
}

std::string redacted(const RedisUrl& url) {
    std::string s = "redis://";
    if (!url.user.empty() || !url.password.empty()) {
        s += url.user;
        s += url.password.empty() ? "@" : ":***@";
    }
    bool v6 = url.host.find(':') != std::string::npos;
    if (v6) s += '[';
    s += url.host;
    if (v6) s += ']';
    s += ':';
    s += std::to_string(url.port);
    if (url.db != 0) {
        s += '/';
        s += std::to_string(url.db);
    }
    return s;
}

bool parse_redis_target(std::string_view text, RedisTarget& out, std::string& error) {
    out = RedisTarget{};
    constexpr std::string_view kSentinel = "sentinel://";
    constexpr std::string_view kCluster = "cluster://";
    if (text.substr(0, kSentinel.size()) != kSentinel &&
        text.substr(0, kCluster.size()) != kCluster) {
        if (!parse_redis_url(text, out.url, error)) return false;
        out.seeds.push_back(RedisEndpoint{out.url.host, out.url.port});
        return true;
    }
    const bool sentinel = text.substr(0, kSentinel.size()) == kSentinel;
    const char* scheme = sentinel ? "sentinel://" : "cluster://";
    out.mode = sentinel ? RedisMode::Sentinel : RedisMode::Cluster;
    std::string_view rest = text.substr(sentinel ? kSentinel.size() : kCluster.size());
    // As in redis://, the user info ends at the last '@' and may hold ',' and '/'.
    std::size_t at = rest.rfind('@');
    std::string_view userinfo =
        at == std::string_view::npos ? std::string_view() : rest.substr(0, at);
    std::string_view hosts = at == std::string_view::npos ? rest : rest.substr(at + 1);
    std::size_t slash = hosts.find('/');
    std::string_view tail =
        slash == std::string_view::npos ? std::string_view() : hosts.substr(slash + 1);
    hosts = hosts.substr(0, slash);
    if (sentinel) {
        if (tail.empty() || tail.find('/') != std::string_view::npos) {
            error = "Sentinel URL must name the primary: sentinel://host:port,host:port/mastername";
            return false;
        }
        out.master_name = tail;
    } else if (!tail.empty()) {
        error = "Cluster URL takes no database (a Redis Cluster has only database 0)";
        return false;
    }
    if (hosts.empty()) {
        error = std::string(scheme) + " URL names no host";
        return false;
    }
    while (!hosts.empty()) {
        std::size_t comma = hosts.find(',');
        std::string_view one = hosts.substr(0, comma);
        hosts = comma == std::string_view::npos ? std::string_view() : hosts.substr(comma + 1);
        if (one.empty()) {
            error = std::string(scheme) + " URL has an empty host in its list";
            return false;
        }
        RedisUrl u;
        if (!parse_redis_url("redis://" + std::string(one), u, error)) {
            std::string msg(scheme);
            msg += " URL, host '";
            msg += one;
            msg += "': ";
            msg += error;
            error = std::move(msg);
            return false;
        }
        const bool port_given = one.find("]:") != std::string_view::npos ||
                                (one[0] != '[' && one.find(':') != std::string_view::npos);
        if (sentinel && !port_given) u.port = 26379;
        out.seeds.push_back(RedisEndpoint{u.host, u.port});
    }
    if (!userinfo.empty()) {
        std::size_t colon = userinfo.find(':');
        if (colon == std::string_view::npos) {
            out.url.password = userinfo;
        } else {
            out.url.user = userinfo.substr(0, colon);
            out.url.password = userinfo.substr(colon + 1);
        }
    }
    out.url.host = out.seeds.front().host;
    out.url.port = out.seeds.front().port;
    return true;
}

std::string redacted(const RedisTarget& t) {
    if (t.mode == RedisMode::Single) return redacted(t.url);
    std::string s = t.mode == RedisMode::Sentinel ? "sentinel://" : "cluster://";
    if (!t.url.user.empty() || !t.url.password.empty()) {
        s += t.url.user;
        s += t.url.password.empty() ? "@" : ":***@";
    }
    for (std::size_t i = 0; i < t.seeds.size(); ++i) {
        if (i != 0) s += ',';
        bool v6 = t.seeds[i].host.find(':') != std::string::npos;
        s += v6 ? "[" + t.seeds[i].host + "]" : t.seeds[i].host;
        s += ':';
        s += std::to_string(t.seeds[i].port);
    }
    if (t.mode == RedisMode::Sentinel) s += "/" + t.master_name;
    return s;
}

std::string redact_redis_urls(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        std::size_t sep = text.find("://", i);
        if (sep == std::string_view::npos) break;
        // The scheme: the letters right before "://".
        std::size_t scheme_at = sep;
        while (scheme_at > i && base::is_alpha(text[scheme_at - 1])) --scheme_at;
        std::string_view scheme = text.substr(scheme_at, sep - scheme_at);
        std::size_t start = sep + 3;
        std::size_t end = start;
        while (end < text.size() && !base::is_lws(text[end]) && text[end] != '\'' &&
               text[end] != '"')
            ++end;
        out.append(text.substr(i, start - i));
        std::string_view rest = text.substr(start, end - start);
        std::size_t at = rest.rfind('@');
        if ((base::iequals(scheme, "redis") || base::iequals(scheme, "rediss") ||
             base::iequals(scheme, "sentinel") || base::iequals(scheme, "cluster")) &&
            at != std::string_view::npos) {
            std::string_view userinfo = rest.substr(0, at);
            std::size_t colon = userinfo.find(':');
            if (colon != std::string_view::npos) out.append(userinfo.substr(0, colon + 1));
            out.append("***");
            out.append(rest.substr(at));
        } else {
            out.append(rest);
        }
        i = end;
    }
    out.append(text.substr(std::min(i, text.size())));
    return out;
}

std::string_view state_text(RedisClient::State s) noexcept {
    switch (s) {
        case RedisClient::State::Idle:
            return "idle";
        case RedisClient::State::Connecting:
            return "connecting";
        case RedisClient::State::Handshake:
            return "handshake";
        case RedisClient::State::Ready:
            return "ready";
        case RedisClient::State::Backoff:
            return "backoff";
        case RedisClient::State::Stopped:
            return "stopped";
    }
    return "?";
}

RedisClient::RedisClient(uv_loop_t* loop, RedisUrl url, RedisOptions opts)
    : loop_(loop), url_(std::move(url)), opts_(std::move(opts)) {
    std::size_t n = opts_.max_pending + kHandshakeSlots;
    slots_.resize(n);
    free_.reserve(n);
    for (auto& s : slots_) {
        s.owner = this;
        free_.push_back(&s);
    }
    ring_.resize(n);
    backoff_ms_ = opts_.backoff_min_ms;
}

// stop() must have run and the loop must have closed the timers.
RedisClient::~RedisClient() = default;

void RedisClient::start() noexcept {
    if (state_ != State::Idle) return;
    uv_timer_init(loop_, &tick_);
    uv_timer_init(loop_, &reconnect_);
    uv_prepare_init(loop_, &flusher_);
    tick_.data = reconnect_.data = flusher_.data = this;
    timers_open_ = true;
    uv_prepare_start(&flusher_,
                     [](uv_prepare_t* p) { static_cast<RedisClient*>(p->data)->flush_writes(); });
    uv_unref(reinterpret_cast<uv_handle_t*>(&flusher_));
    uint64_t tick =
        std::max<uint64_t>(1, std::min(opts_.command_timeout_ms, opts_.connect_timeout_ms) / 4);
    uv_timer_start(
        &tick_, [](uv_timer_t* t) { static_cast<RedisClient*>(t->data)->on_tick(); }, tick, tick);
    connect();
}

void RedisClient::stop() noexcept {
    if (state_ == State::Stopped) return;
    set_state(State::Stopped);
    if (ac_ != nullptr) {
        redisAsyncContext* ac = ac_;
        ac_ = nullptr;
        redisAsyncFree(ac);  // pending callbacks run now with a null reply -> Disconnected
    }
    if (timers_open_) {
        uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&reconnect_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&flusher_), nullptr);
        timers_open_ = false;
    }
}

void RedisClient::set_state(State s) noexcept {
    if (state_ == s) return;
    state_ = s;
    if (state_fn_ != nullptr) state_fn_(state_ctx_, s);
}

void RedisClient::connect() noexcept {
    if (state_ == State::Stopped) return;
    redisAsyncContext* ac = redisAsyncConnect(url_.host.c_str(), url_.port);
    if (ac == nullptr || ac->err != 0) {
        last_error_ = ac != nullptr ? ac->errstr : "out of memory";
        if (ac != nullptr) redisAsyncFree(ac);
        schedule_reconnect();
        return;
    }
    ac->data = this;
    // Reply objects from per-thread free lists (reply_pool.h): none allocated per reply once warm.
    ac->c.reader->fn = detail::pooled_reply_functions();
    if (!Events::attach(ac, loop_, this)) {
        last_error_ = "cannot attach to the event loop";
        redisAsyncFree(ac);
        schedule_reconnect();
        return;
    }
    redisAsyncSetConnectCallback(ac, &RedisClient::on_connect);
    redisAsyncSetDisconnectCallback(ac, &RedisClient::on_disconnect);
    ac_ = ac;
    connect_deadline_ = uv_now(loop_) + opts_.connect_timeout_ms;
    set_state(State::Connecting);
}

void RedisClient::schedule_reconnect() noexcept {
    if (state_ == State::Stopped || !timers_open_) return;
    set_state(State::Backoff);
    uv_timer_start(
        &reconnect_,
        [](uv_timer_t* t) {
            auto* self = static_cast<RedisClient*>(t->data);
            self->connect();
        },
        backoff_ms_, 0);
    backoff_ms_ = std::min(opts_.backoff_max_ms, backoff_ms_ * 2);
}

void RedisClient::drop_connection(const char* why) noexcept {
    last_error_ = why;
    if (ac_ != nullptr) {
        redisAsyncContext* ac = ac_;
        ac_ = nullptr;
        // Pending callbacks run with a null reply; the disconnect callback, if it runs, sees
        // ac_ == nullptr and leaves the reconnect to us.
        redisAsyncFree(ac);
    }
    schedule_reconnect();
}

void RedisClient::send_handshake(int argc, const char* const* argv, const std::size_t* lens,
                                 ReplyFn fn) noexcept {
    if (send(argc, argv, lens, fn, this) == RedisError::None) ++handshake_left_;
}

void RedisClient::on_connect(const redisAsyncContext* ac, int status) {
    auto* self = static_cast<RedisClient*>(ac->data);
    if (self == nullptr || self->ac_ != ac) return;
    if (status != REDIS_OK) {
        // hiredis frees the context after this callback.
        self->last_error_ = ac->errstr;
        self->ac_ = nullptr;
        self->schedule_reconnect();
        return;
    }
    self->set_state(State::Handshake);
    self->handshake_left_ = 0;
    self->client_id_ = 0;
    if (!self->url_.password.empty()) {
        const char* argv[3];
        std::size_t lens[3];
        int argc = 0;
        argv[argc] = "AUTH";
        lens[argc++] = 4;
        if (!self->url_.user.empty()) {
            argv[argc] = self->url_.user.data();
            lens[argc++] = self->url_.user.size();
        }
        argv[argc] = self->url_.password.data();
        lens[argc++] = self->url_.password.size();
        self->send_handshake(argc, argv, lens, &RedisClient::on_handshake);
    }
    if (self->url_.db != 0) {
        std::string db = std::to_string(self->url_.db);
        const char* argv[2] = {"SELECT", db.c_str()};
        std::size_t lens[2] = {6, db.size()};
        self->send_handshake(2, argv, lens, &RedisClient::on_handshake);
    }
    if (!self->opts_.client_name.empty()) {
        const std::string& name = self->opts_.client_name;
        const char* argv[3] = {"CLIENT", "SETNAME", name.c_str()};
        std::size_t lens[3] = {6, 7, name.size()};
        self->send_handshake(3, argv, lens, &RedisClient::on_handshake);
    }
    if (self->opts_.fetch_client_id) {
        const char* argv[2] = {"CLIENT", "ID"};
        std::size_t lens[2] = {6, 2};
        self->send_handshake(2, argv, lens, &RedisClient::on_client_id);
    }
    if (self->opts_.require_primary || self->opts_.require_synced) {
        const char* argv[1] = {"ROLE"};
        std::size_t lens[1] = {4};
        self->send_handshake(1, argv, lens, &RedisClient::on_role);
    }
    // A PING last: Ready only once Redis has answered. A TCP connect alone proves nothing (the
    // kernel accepts for a Redis that is stopped or stuck), and a worker that called itself Ready
    // on it would answer the health probe 200 until its first commands time out.
    {
        const char* argv[1] = {"PING"};
        std::size_t lens[1] = {4};
        if (self->send(1, argv, lens, &RedisClient::on_handshake, self) == RedisError::None)
            ++self->handshake_left_;
    }
    if (self->handshake_left_ == 0) self->handshake_done(true, nullptr);
}

void RedisClient::on_handshake(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* self = static_cast<RedisClient*>(ctx);
    // ac_ is null while drop_connection() frees the context: its reason stays the last error.
    if (self->state_ != State::Handshake || self->ac_ == nullptr) return;
    bool ok = err == RedisError::None && reply != nullptr && reply->type != REDIS_REPLY_ERROR;
    if (!ok) {
        self->handshake_done(false, reply);
        return;
    }
    if (--self->handshake_left_ == 0) self->handshake_done(true, nullptr);
}

void RedisClient::on_client_id(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* self = static_cast<RedisClient*>(ctx);
    if (self->state_ == State::Handshake && err == RedisError::None && reply != nullptr &&
        reply->type == REDIS_REPLY_INTEGER)
        self->client_id_ = reply->integer;
    on_handshake(ctx, err, reply);
}

bool RedisClient::role_acceptable(const redisReply* reply, std::string& why) const {
    const redisReply* role =
        reply != nullptr && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
            ? reply->element[0]
            : nullptr;
    if (role == nullptr || role->type != REDIS_REPLY_STRING) {
        why = "ROLE gave no role";
        return false;
    }
    std::string_view name(role->str, role->len);
    if (name == "master") return true;
    if (opts_.require_primary) {
        why = "not the primary (ROLE: " + std::string(name) + ")";
        return false;
    }
    // A replica: ["slave", host, port, state, offset]; serve only with the link "connected".
    const redisReply* state = reply->elements > 3 ? reply->element[3] : nullptr;
    std::string_view link = state != nullptr && state->type == REDIS_REPLY_STRING
                                ? std::string_view(state->str, state->len)
                                : std::string_view("?");
    if (name == "slave" && link == "connected") return true;
    why = "a replica not in sync with its primary (ROLE: " + std::string(name) + ", link " +
          std::string(link) + ")";
    return false;
}

void RedisClient::on_role(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* self = static_cast<RedisClient*>(ctx);
    if (self->state_ == State::Handshake && err == RedisError::None && reply != nullptr &&
        reply->type != REDIS_REPLY_ERROR) {
        std::string why;
        if (!self->role_acceptable(reply, why)) {
            self->handshake_done(false, nullptr);
            self->last_error_ = std::move(why);
            return;
        }
    }
    on_handshake(ctx, err, reply);
}

void RedisClient::on_role_check(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* self = static_cast<RedisClient*>(ctx);
    self->role_check_pending_ = false;
    if (self->state_ != State::Ready || err != RedisError::None) return;  // timeouts: on_tick
    std::string why;
    if (reply->type == REDIS_REPLY_ERROR || !self->role_acceptable(reply, why)) {
        // Not from inside hiredis's reply dispatch: on_tick drops it.
        self->last_error_ = why.empty() ? std::string("ROLE refused") : why;
        self->role_failed_ = true;
    }
}

void RedisClient::handshake_done(bool ok, const redisReply* reply) noexcept {
    if (!ok) {
        std::string why = "handshake failed";
        if (reply != nullptr && reply->type == REDIS_REPLY_ERROR)
            why += std::string(": ") + std::string(reply->str, reply->len);
        // Not from inside hiredis's reply dispatch: defer the free to the next tick.
        last_error_ = why;
        connect_deadline_ = 0;  // on_tick drops the connection at once
        return;
    }
    if (!channel_.empty() && ac_ != nullptr) {
        // Sent only now, after every handshake reply: hiredis routes the replies of a subscribed
        // connection by channel, and an error reply there would drop the connection unexplained.
        // The subscription lives outside the ring (hiredis keeps its callback per channel, for
        // every message); Ready comes with Redis's confirmation, in on_push().
        const char* argv[2] = {"SUBSCRIBE", channel_.c_str()};
        std::size_t lens[2] = {9, channel_.size()};
        char resp[512];
        std::size_t n = format_resp(2, argv, lens, resp, sizeof resp);
        if (n == 0 ||
            redisAsyncFormattedCommand(ac_, &RedisClient::on_push, this, resp, n) != REDIS_OK) {
            last_error_ = "cannot send SUBSCRIBE";
            connect_deadline_ = 0;
        }
        return;
    }
    backoff_ms_ = opts_.backoff_min_ms;
    last_error_.clear();
    role_check_pending_ = false;
    role_failed_ = false;
    next_role_check_ = uv_now(loop_) + opts_.role_check_ms;
    set_state(State::Ready);
}

void RedisClient::on_push(redisAsyncContext* ac, void* reply, void* privdata) {
    auto* self = static_cast<RedisClient*>(privdata);
    // A null reply: hiredis is freeing the context (the loss is reported by the state change).
    if (reply == nullptr || self->ac_ != ac) return;
    const auto* r = static_cast<const redisReply*>(reply);
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    std::string_view kind(r->element[0]->str, r->element[0]->len);
    if (kind == "subscribe") {
        if (self->state_ != State::Handshake) return;
        self->backoff_ms_ = self->opts_.backoff_min_ms;
        self->last_error_.clear();
        self->set_state(State::Ready);
    } else if (kind == "message" && self->state_ == State::Ready && self->message_fn_ != nullptr) {
        self->message_fn_(self->message_ctx_, r);
    }
}

void RedisClient::subscribe(std::string channel, MessageFn fn, void* ctx) {
    channel_ = std::move(channel);
    message_fn_ = fn;
    message_ctx_ = ctx;
}

void RedisClient::on_disconnect(const redisAsyncContext* ac, int) {
    auto* self = static_cast<RedisClient*>(ac->data);
    if (self == nullptr || self->ac_ != ac) return;  // we freed it ourselves
    self->last_error_ = ac->err != 0 ? ac->errstr : "connection closed";
    self->ac_ = nullptr;  // hiredis frees it after this callback
    self->schedule_reconnect();
}

RedisClient::Slot* RedisClient::acquire() noexcept {
    if (free_.empty()) return nullptr;
    Slot* s = free_.back();
    free_.pop_back();
    return s;
}

void RedisClient::release(Slot* s) noexcept {
    s->fn = nullptr;
    s->ctx = nullptr;
    s->fired = false;
    free_.push_back(s);
}

RedisError RedisClient::command(int argc, const char* const* argv, const std::size_t* lens,
                                ReplyFn fn, void* ctx) noexcept {
    if (state_ != State::Ready || !channel_.empty()) return RedisError::Unavailable;
    if (in_flight_ >= opts_.max_pending) return RedisError::Overloaded;
    return send(argc, argv, lens, fn, ctx);
}

RedisError RedisClient::command_resp(std::string_view resp, ReplyFn fn, void* ctx) noexcept {
    if (state_ != State::Ready || !channel_.empty()) return RedisError::Unavailable;
    if (in_flight_ >= opts_.max_pending) return RedisError::Overloaded;
    if (resp.empty()) return RedisError::Unavailable;
    return send_resp(resp, 0, nullptr, nullptr, fn, ctx);
}

void RedisClient::retarget(const std::string& host, uint16_t port) noexcept {
    if (host == url_.host && port == url_.port) return;
    url_.host = host;
    url_.port = port;
    if (state_ == State::Idle || state_ == State::Stopped) return;
    backoff_ms_ = opts_.backoff_min_ms;
    uv_timer_stop(&reconnect_);
    if (ac_ != nullptr) {
        // Commands in flight get Disconnected (they went to the old node).
        redisAsyncContext* ac = ac_;
        ac_ = nullptr;
        redisAsyncFree(ac);
        if (state_ == State::Stopped) return;  // a callback stopped us
    }
    last_error_ = "the primary moved";
    // At once, not after a back-off: the new node is known to be there, and every moment
    // without a connection is a 503.
    connect();
}

RedisError RedisClient::send(int argc, const char* const* argv, const std::size_t* lens, ReplyFn fn,
                             void* ctx) noexcept {
    // Small commands (every look-up) are written as RESP here, on the stack: hiredis's own
    // formatting goes through sds strings, a malloc and sdscatfmt per command.
    char resp[2048];
    std::size_t n = format_resp(argc, argv, lens, resp, sizeof resp);
    return send_resp(std::string_view(resp, n), argc, argv, lens, fn, ctx);
}

RedisError RedisClient::send_resp(std::string_view resp, int argc, const char* const* argv,
                                  const std::size_t* lens, ReplyFn fn, void* ctx) noexcept {
    if (ac_ == nullptr) return RedisError::Unavailable;
    Slot* s = acquire();
    if (s == nullptr) return RedisError::Overloaded;
    s->fn = fn;
    s->ctx = ctx;
    s->fired = false;
    s->deadline = uv_now(loop_) + opts_.command_timeout_ms;
    int rc = !resp.empty() ? redisAsyncFormattedCommand(ac_, &RedisClient::on_reply, s, resp.data(),
                                                        resp.size())
                           : redisAsyncCommandArgv(ac_, &RedisClient::on_reply, s, argc,
                                                   const_cast<const char**>(argv), lens);
    if (rc != REDIS_OK) {
        release(s);
        return RedisError::Unavailable;
    }
    ring_[(ring_head_ + in_flight_) % ring_.size()] = s;
    ++in_flight_;
    return RedisError::None;
}

void RedisClient::on_reply(redisAsyncContext*, void* reply, void* privdata) {
    auto* s = static_cast<Slot*>(privdata);
    RedisClient* self = s->owner;
    // Redis answers in order: this is the ring's front.
    if (self->in_flight_ > 0 && self->ring_[self->ring_head_] == s) {
        self->ring_head_ = (self->ring_head_ + 1) % self->ring_.size();
        --self->in_flight_;
    }
    ReplyFn fn = s->fn;
    void* ctx = s->ctx;
    bool fired = s->fired;
    self->release(s);
    if (fired || fn == nullptr) return;
    if (reply == nullptr)
        fn(ctx, RedisError::Disconnected, nullptr);
    else
        fn(ctx, RedisError::None, static_cast<const redisReply*>(reply));
}

void RedisClient::on_tick() noexcept {
    uint64_t now = uv_now(loop_);
    if (state_ == State::Ready && role_failed_) {
        role_failed_ = false;
        std::string why = last_error_;
        drop_connection(why.c_str());
        return;
    }
    if (state_ == State::Ready && opts_.role_check_ms != 0 && !role_check_pending_ &&
        now >= next_role_check_) {
        next_role_check_ = now + opts_.role_check_ms;
        const char* argv[1] = {"ROLE"};
        std::size_t lens[1] = {4};
        if (send(1, argv, lens, &RedisClient::on_role_check, this) == RedisError::None)
            role_check_pending_ = true;
    }
    if ((state_ == State::Connecting || state_ == State::Handshake) && now >= connect_deadline_) {
        std::string why = last_error_.empty() ? std::string("connect timeout") : last_error_;
        drop_connection(why.c_str());
        return;
    }
    // Time out the oldest commands. Their slots stay in the ring until Redis answers or the
    // connection goes, so the order of replies keeps matching.
    bool stalled = false;
    for (std::size_t i = 0; i < in_flight_; ++i) {
        Slot* s = ring_[(ring_head_ + i) % ring_.size()];
        if (s->deadline > now) break;
        if (!s->fired) {
            s->fired = true;
            if (s->fn != nullptr) s->fn(s->ctx, RedisError::Timeout, nullptr);
            if (state_ == State::Stopped) return;  // the callback stopped us
        }
        // A reply owed for four timeouts: the server or the path to it is stuck. Reconnect.
        if (now >= s->deadline + 3ull * opts_.command_timeout_ms) stalled = true;
    }
    if (stalled && state_ == State::Ready) drop_connection("no reply from Redis, reconnecting");
}

}  // namespace sipr::location
