// RedisClient's state machine and callback contract (redis_client.h): every command accepted gets
// its callback exactly once - with the reply, Timeout or Disconnected - and a command refused at
// the call never calls back. Against a real redis-server (support/redis_server.h): the handshake,
// pipelining, timeouts, a server killed and restarted, stop() with commands in flight. Against a
// scripted server socket on the test's loop that misbehaves: never answers, answers garbage,
// hangs up mid-reply, refuses AUTH.
#include "sipr/location/redis_client.h"

#include <doctest/doctest.h>

#include "location/reply_pool.h"
#include "support/redis_server.h"

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace sipr;
using location::RedisClient;
using location::RedisError;
using location::RedisOptions;
using State = RedisClient::State;

// What one command's callback was given; `calls` must end at 1.
struct Call {
    int calls = 0;
    RedisError err = RedisError::None;
    int type = 0;
    std::string str;
    long long integer = 0;
};

void record(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* c = static_cast<Call*>(ctx);
    ++c->calls;
    c->err = err;
    if (reply != nullptr) {
        c->type = reply->type;
        c->integer = reply->integer;
        if (reply->str != nullptr) c->str.assign(reply->str, reply->len);
    }
}

RedisOptions fast_options() {
    RedisOptions o;
    o.connect_timeout_ms = 1000;
    o.command_timeout_ms = 300;
    o.backoff_min_ms = 10;
    o.backoff_max_ms = 40;
    return o;
}

// A client and every state it went through.
struct ClientRig {
    test::TestLoop loop;
    std::unique_ptr<RedisClient> client;
    std::vector<State> states;

    void make(location::RedisUrl url, RedisOptions opts = fast_options()) {
        client = std::make_unique<RedisClient>(loop.get(), std::move(url), opts);
        client->on_state(
            [](void* ctx, State s) noexcept { static_cast<ClientRig*>(ctx)->states.push_back(s); },
            this);
    }
    ~ClientRig() {
        if (client) {
            client->stop();
            loop.drain();
        }
    }
    bool wait_ready(uint64_t ms = 3000) {
        return loop.run_until([&] { return client->ready(); }, ms);
    }
    // make() on `url`, start, and wait until Ready.
    bool start_ready(location::RedisUrl url, RedisOptions opts = fast_options()) {
        make(std::move(url), opts);
        client->start();
        return wait_ready();
    }
    bool wait_state(State s, uint64_t ms = 3000) {
        return loop.run_until([&] { return client->state() == s; }, ms);
    }
    [[nodiscard]] RedisError send(std::vector<std::string> args, Call& call) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const std::string& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        return client->command(static_cast<int>(argv.size()), argv.data(), lens.data(), &record,
                               &call);
    }
    [[nodiscard]] std::size_t count(State s) const {
        return static_cast<std::size_t>(std::count(states.begin(), states.end(), s));
    }
};

// ---------------------------------------------------------------------------------------------
// A scripted Redis: a TCP listener on the test's loop that reads RESP commands and answers each
// as the test's script says.

class ScriptedServer {
  public:
    struct Answer {
        std::string bytes;   // written at once ("" writes nothing)
        bool close = false;  // then hang up
    };
    // `conn` counts connections from 0; `index` the commands of that connection.
    using Script =
        std::function<Answer(int conn, int index, const std::vector<std::string>& command)>;

    ScriptedServer(uv_loop_t* loop, Script script) : loop_(loop), script_(std::move(script)) {
        REQUIRE(uv_tcp_init(loop_, &listener_) == 0);
        listener_.data = this;
        sockaddr_in a{};
        uv_ip4_addr("127.0.0.1", 0, &a);
        REQUIRE(uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&a), 0) == 0);
        REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 16, &on_connection) == 0);
        int len = sizeof a;
        REQUIRE(uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port_ = ntohs(a.sin_port);
    }
    ~ScriptedServer() {
        while (!conns_.empty()) hang_up(*conns_.begin());
        uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
        uv_run(loop_, UV_RUN_NOWAIT);  // the close callbacks, before this object is gone
    }
    ScriptedServer(const ScriptedServer&) = delete;
    ScriptedServer& operator=(const ScriptedServer&) = delete;

    [[nodiscard]] location::RedisUrl url() const {
        location::RedisUrl u;
        u.port = port_;
        return u;
    }
    int connections = 0;
    std::vector<std::vector<std::string>> commands;  // every command received, in order

  private:
    struct Conn {
        uv_tcp_t tcp{};
        ScriptedServer* server = nullptr;
        int id = 0;
        int index = 0;
        std::string in;
        bool closing = false;
    };

    static void on_connection(uv_stream_t* l, int status) {
        auto* self = static_cast<ScriptedServer*>(l->data);
        if (status != 0) return;
        auto* c = new Conn;
        c->server = self;
        c->id = self->connections++;
        uv_tcp_init(self->loop_, &c->tcp);
        c->tcp.data = c;
        if (uv_accept(l, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
            uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
                     [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
            return;
        }
        self->conns_.insert(c);
        uv_read_start(
            reinterpret_cast<uv_stream_t*>(&c->tcp),
            [](uv_handle_t*, std::size_t suggested, uv_buf_t* buf) {
                buf->base = static_cast<char*>(std::malloc(suggested));
                buf->len = suggested;
            },
            &on_read);
    }

    static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* c = static_cast<Conn*>(s->data);
        if (n > 0) c->in.append(buf->base, static_cast<std::size_t>(n));
        std::free(buf->base);
        if (n < 0) {
            c->server->hang_up(c);
            return;
        }
        std::vector<std::string> cmd;
        while (!c->closing && parse(c->in, cmd)) {
            c->server->commands.push_back(cmd);
            Answer a = c->server->script_(c->id, c->index++, cmd);
            if (!a.bytes.empty()) {
                uv_buf_t out = uv_buf_init(a.bytes.data(), static_cast<unsigned>(a.bytes.size()));
                // Loopback takes a few bytes at once; a short write is a broken test.
                REQUIRE(uv_try_write(s, &out, 1) == static_cast<int>(a.bytes.size()));
            }
            if (a.close) c->server->hang_up(c);
        }
    }

    // Takes one whole RESP array of bulk strings off the front of `in`.
    static bool parse(std::string& in, std::vector<std::string>& cmd) {
        cmd.clear();
        std::size_t pos = 0;
        auto line = [&](char kind, long& value) {
            if (pos >= in.size() || in[pos] != kind) return false;
            std::size_t end = in.find("\r\n", pos);
            if (end == std::string::npos) return false;
            value = std::strtol(in.c_str() + pos + 1, nullptr, 10);
            pos = end + 2;
            return true;
        };
        long n = 0;
        if (!line('*', n)) return false;
        for (long i = 0; i < n; ++i) {
            long len = 0;
            if (!line('$', len)) return false;
            if (pos + static_cast<std::size_t>(len) + 2 > in.size()) return false;
            cmd.emplace_back(in, pos, static_cast<std::size_t>(len));
            pos += static_cast<std::size_t>(len) + 2;
        }
        in.erase(0, pos);
        return true;
    }

    void hang_up(Conn* c) {
        if (c->closing) return;
        c->closing = true;
        conns_.erase(c);
        uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
                 [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
    }

    uv_loop_t* loop_;
    Script script_;
    uv_tcp_t listener_{};
    uint16_t port_ = 0;
    std::set<Conn*> conns_;
};

// A script that answers the handshake's PING and then `then` for every other command.
ScriptedServer::Script after_pong(std::function<ScriptedServer::Answer(int conn)> then) {
    return [then](int conn, int, const std::vector<std::string>& cmd) {
        if (!cmd.empty() && cmd[0] == "PING") return ScriptedServer::Answer{"+PONG\r\n", false};
        return then(conn);
    };
}

}  // namespace

TEST_SUITE_BEGIN("location");

// =============================================================================================
// Against a real redis-server

TEST_CASE("RedisClient: AUTH, SELECT, CLIENT SETNAME, CLIENT ID and ROLE, then Ready") {
    test::RedisServer server({"--requirepass", "s3cret"});
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    location::RedisUrl url = server.url();
    url.password = "s3cret";
    url.db = 3;
    RedisOptions opts = fast_options();
    opts.client_name = "sipr-unit";
    opts.fetch_client_id = true;
    opts.require_primary = true;
    rig.make(url, opts);
    CHECK(rig.client->state() == State::Idle);
    Call refused;
    CHECK(rig.send({"PING"}, refused) == RedisError::Unavailable);

    rig.client->start();
    REQUIRE(rig.wait_ready());
    CHECK(rig.states == std::vector<State>{State::Connecting, State::Handshake, State::Ready});
    CHECK(rig.client->last_error().empty());
    CHECK(rig.client->client_id() > 0);

    // The connection is in database 3 under its name.
    test::ReplyPtr list = server.command({"CLIENT", "LIST"}, "s3cret");
    REQUIRE(list);
    std::string_view text(list->str, list->len);
    std::size_t at = text.find("name=sipr-unit");
    REQUIRE(at != std::string_view::npos);
    std::size_t line = text.rfind('\n', at);
    std::string_view ours = text.substr(line == std::string_view::npos ? 0 : line + 1);
    ours = ours.substr(0, ours.find('\n'));
    CHECK(ours.find("id=" + std::to_string(rig.client->client_id()) + " ") == 0);
    CHECK(ours.find(" db=3 ") != std::string_view::npos);

    Call set;
    REQUIRE(rig.send({"SET", "k", "v"}, set) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return set.calls > 0; }));
    CHECK(set.err == RedisError::None);
    CHECK(set.str == "OK");
    test::ReplyPtr db3 = server.command(
        {"EVAL", "redis.call('SELECT', 3) return redis.call('GET', 'k')", "0"}, "s3cret");
    REQUIRE(db3);
    CHECK(std::string(db3->str, db3->len) == "v");
    CHECK(refused.calls == 0);

    // An ACL user with its password works too.
    ClientRig acl;
    url.user = "default";
    acl.make(url, opts);
    acl.client->start();
    CHECK(acl.wait_ready());
}

TEST_CASE("RedisClient: a wrong password never gets Ready; it backs off and tries again") {
    test::RedisServer server({"--requirepass", "s3cret"});
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    location::RedisUrl url = server.url();
    url.password = "not-the-password-x9";
    rig.make(url);
    rig.client->start();
    REQUIRE(rig.loop.run_until([&] { return rig.count(State::Backoff) >= 2; }));
    CHECK(rig.count(State::Ready) == 0);
    CHECK(rig.count(State::Handshake) >= 2);
    CHECK(rig.client->last_error().find("handshake failed") != std::string::npos);
    CHECK(rig.client->last_error().find("x9") == std::string::npos);  // no password quoted
    CHECK(rig.client->pending() == 0);
}

TEST_CASE("RedisClient: pipelined commands each get their own reply, once, in order") {
    test::RedisServer server;
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    REQUIRE(rig.start_ready(server.url()));
    std::vector<Call> calls(200);
    for (Call& c : calls) REQUIRE(rig.send({"INCR", "counter"}, c) == RedisError::None);
    CHECK(rig.client->pending() == 200);
    REQUIRE(rig.loop.run_until([&] { return calls.back().calls > 0; }));
    rig.loop.run_for(5);
    for (std::size_t i = 0; i < calls.size(); ++i) {
        CAPTURE(i);
        CHECK(calls[i].calls == 1);
        CHECK(calls[i].err == RedisError::None);
        CHECK(calls[i].integer == static_cast<long long>(i + 1));
    }
    CHECK(rig.client->pending() == 0);

    // An error reply is a reply: err None, the error in the reply.
    Call bad;
    REQUIRE(rig.send({"NOSUCHCOMMAND"}, bad) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return bad.calls > 0; }));
    CHECK(bad.err == RedisError::None);
    CHECK(bad.type == REDIS_REPLY_ERROR);
    CHECK(rig.client->ready());
}

// A reply tree written out: "[1,'two',[3,nil],!bad]".
void describe(const redisReply* r, std::string& out) {
    switch (r->type) {
        case REDIS_REPLY_ARRAY:
            out += '[';
            for (std::size_t i = 0; i < r->elements; ++i) {
                if (i != 0) out += ',';
                describe(r->element[i], out);
            }
            out += ']';
            break;
        case REDIS_REPLY_INTEGER:
            out += std::to_string(r->integer);
            break;
        case REDIS_REPLY_NIL:
            out += "nil";
            break;
        case REDIS_REPLY_ERROR:
            out += '!';
            [[fallthrough]];
        default:
            out += '\'';
            out.append(r->str, r->len);
            out += '\'';
            CHECK(r->str[r->len] == '\0');
    }
}

void record_tree(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* out = static_cast<std::string*>(ctx);
    if (err != RedisError::None || reply == nullptr) {
        *out = "error";
        return;
    }
    out->clear();
    describe(reply, *out);
}

TEST_CASE("RedisClient: every reply shape arrives whole; once warm, replies take no fresh blocks") {
    // The async context builds replies with reply_pool.h's functions: the same tree as hiredis's
    // own, from per-thread free lists. Nested arrays, integers, nil, an error inside an array,
    // a string past the largest block (malloc'd), an array of 81 elements.
    test::RedisServer server;
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    REQUIRE(rig.start_ready(server.url()));
    const std::string big(3000, 'x');
    std::vector<std::string> hset = {"HSET", "h"};
    for (int i = 0; i < 40; ++i) {
        hset.push_back(std::to_string(i).insert(0, 1, 'f'));
        hset.push_back(std::to_string(i).insert(0, 1, 'v'));
    }
    Call setup;
    REQUIRE(rig.send(hset, setup) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return setup.calls > 0; }));
    const std::vector<std::vector<std::string>> commands = {
        {"EVAL", "return {1, 'two', {3, false, {'deep'}}, redis.error_reply('E1 bad')}", "0"},
        {"ECHO", big},
        {"HGETALL", "h"},
        {"GET", "missing"},
        {"NOSUCHCOMMAND"},
    };
    auto run_all = [&] {
        std::vector<std::string> got(commands.size());
        for (std::size_t i = 0; i < commands.size(); ++i) {
            std::vector<const char*> argv;
            std::vector<std::size_t> lens;
            for (const std::string& a : commands[i]) {
                argv.push_back(a.data());
                lens.push_back(a.size());
            }
            REQUIRE(rig.client->command(static_cast<int>(argv.size()), argv.data(), lens.data(),
                                        &record_tree, &got[i]) == RedisError::None);
        }
        REQUIRE(rig.loop.run_until([&] { return !got.back().empty(); }));
        return got;
    };
    std::vector<std::string> got = run_all();
    CHECK(got[0] == "[1,'two',[3,nil,['deep']],!'E1 bad']");
    std::string quoted_big = "'";
    quoted_big.append(big);
    quoted_big += '\'';
    CHECK(got[1] == quoted_big);
    CHECK(got[2].size() > 400);
    CHECK(got[2].substr(0, 16) == "['f0','v0','f1',");
    CHECK(got[3] == "nil");
    CHECK(got[4].substr(0, 5) == "!'ERR");

    const uint64_t fresh = location::detail::reply_pool_fresh_blocks();
    for (int round = 0; round < 20; ++round) CHECK(run_all() == got);
    CHECK(location::detail::reply_pool_fresh_blocks() == fresh);
    CHECK(location::detail::reply_pool_free_blocks() > 0);
}

TEST_CASE("RedisClient: beyond max_pending a command is refused at the call, never called back") {
    test::RedisServer server;
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    RedisOptions opts = fast_options();
    opts.max_pending = 2;
    REQUIRE(rig.start_ready(server.url(), opts));
    Call a, b, c;
    REQUIRE(rig.send({"PING"}, a) == RedisError::None);
    REQUIRE(rig.send({"PING"}, b) == RedisError::None);
    CHECK(rig.send({"PING"}, c) == RedisError::Overloaded);
    REQUIRE(rig.loop.run_until([&] { return b.calls > 0; }));
    rig.loop.run_for(5);
    CHECK(a.calls == 1);
    CHECK(b.calls == 1);
    CHECK(c.calls == 0);
    // The slots came back.
    CHECK(rig.send({"PING"}, c) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return c.calls > 0; }));
}

TEST_CASE(
    "RedisClient: a command with no reply in time gets Timeout once, the late reply nothing") {
    test::RedisServer server;
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    RedisOptions opts = fast_options();
    opts.command_timeout_ms = 150;
    REQUIRE(rig.start_ready(server.url(), opts));
    Call slow;
    const uint64_t t0 = uv_hrtime();
    REQUIRE(rig.send({"BLPOP", "nothing", "0.4"}, slow) == RedisError::None);  // nil at 400 ms
    REQUIRE(rig.loop.run_until([&] { return slow.calls > 0; }));
    const uint64_t waited_ms = (uv_hrtime() - t0) / 1'000'000;
    CHECK(slow.err == RedisError::Timeout);
    CHECK(waited_ms >= 140);  // the loop's clock is in whole milliseconds
    CHECK(waited_ms < 400);
    // The reply comes at 400 ms (before the stall limit of four timeouts, 600 ms) and is swallowed;
    // the next command gets its own reply, not the late one.
    REQUIRE(rig.loop.run_until([&] { return rig.client->pending() == 0; }, 1000));
    Call next;
    REQUIRE(rig.send({"PING"}, next) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return next.calls > 0; }));
    rig.loop.run_for(20);
    CHECK(next.err == RedisError::None);
    CHECK(next.str == "PONG");
    CHECK(slow.calls == 1);
    CHECK(next.calls == 1);
    CHECK(rig.count(State::Ready) == 1);  // no reconnect
}

TEST_CASE("RedisClient: a reply owed for four timeouts drops the connection and reconnects") {
    test::RedisServer server;
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    RedisOptions opts = fast_options();
    opts.command_timeout_ms = 50;
    REQUIRE(rig.start_ready(server.url(), opts));
    Call stuck;
    REQUIRE(rig.send({"BLPOP", "nothing", "5"}, stuck) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return rig.count(State::Ready) == 2; }));
    CHECK(stuck.calls == 1);
    CHECK(stuck.err == RedisError::Timeout);
    CHECK(rig.count(State::Backoff) == 1);
    CHECK(rig.client->pending() == 0);
}

TEST_CASE("RedisClient: the server killed and restarted - Disconnected once, then Ready again") {
    test::RedisServer server;
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    REQUIRE(rig.start_ready(server.url()));
    std::vector<Call> inflight(5);
    for (Call& c : inflight) REQUIRE(rig.send({"BLPOP", "nothing", "5"}, c) == RedisError::None);
    rig.loop.run_for(10);  // written
    server.stop();
    REQUIRE(rig.loop.run_until([&] { return !rig.client->ready(); }));
    rig.loop.run_for(10);
    for (const Call& c : inflight) {
        CHECK(c.calls == 1);
        CHECK(c.err == RedisError::Disconnected);
    }
    CHECK(rig.client->pending() == 0);
    // Down: refused at the call; it keeps trying (connection refused) with back-off.
    Call refused;
    CHECK(rig.send({"PING"}, refused) == RedisError::Unavailable);
    REQUIRE(rig.loop.run_until([&] { return rig.count(State::Backoff) >= 3; }));
    CHECK(!rig.client->last_error().empty());

    REQUIRE(server.start());  // the same port
    REQUIRE(rig.wait_ready());
    Call after;
    REQUIRE(rig.send({"PING"}, after) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return after.calls > 0; }));
    CHECK(after.str == "PONG");
    CHECK(refused.calls == 0);
    for (const Call& c : inflight) CHECK(c.calls == 1);
    CHECK(rig.client->last_error().empty());
}

TEST_CASE("RedisClient: stop() with commands in flight - each gets Disconnected once, at once") {
    test::RedisServer server;
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    REQUIRE(rig.start_ready(server.url()));
    std::vector<Call> inflight(10);
    for (Call& c : inflight) REQUIRE(rig.send({"BLPOP", "nothing", "5"}, c) == RedisError::None);
    Call unsent;  // queued this turn, not yet written
    REQUIRE(rig.send({"PING"}, unsent) == RedisError::None);
    rig.client->stop();
    for (const Call& c : inflight) {
        CHECK(c.calls == 1);
        CHECK(c.err == RedisError::Disconnected);
    }
    CHECK(unsent.calls == 1);
    CHECK(unsent.err == RedisError::Disconnected);
    CHECK(rig.client->state() == State::Stopped);
    CHECK(rig.states.back() == State::Stopped);
    CHECK(rig.client->pending() == 0);
    Call later;
    CHECK(rig.send({"PING"}, later) == RedisError::Unavailable);
    rig.client->stop();  // again: nothing
    rig.loop.drain();
    // Every handle it had is closed: the loop has nothing left to run.
    CHECK(uv_loop_alive(rig.loop.get()) == 0);
    for (const Call& c : inflight) CHECK(c.calls == 1);
    CHECK(later.calls == 0);
}

TEST_CASE("RedisClient: a callback that stops the client - the others still get theirs once") {
    test::RedisServer server;
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    RedisOptions opts = fast_options();
    opts.command_timeout_ms = 60;
    REQUIRE(rig.start_ready(server.url(), opts));
    struct Stopper {
        RedisClient* client = nullptr;
        Call call;
    } stopper{rig.client.get(), {}};
    std::vector<Call> behind(3);
    const char* argv[3] = {"BLPOP", "nothing", "5"};
    const std::size_t lens[3] = {5, 7, 1};
    REQUIRE(rig.client->command(
                3, argv, lens,
                [](void* ctx, RedisError err, const redisReply* r) noexcept {
                    auto* s = static_cast<Stopper*>(ctx);
                    record(&s->call, err, r);
                    s->client->stop();
                },
                &stopper) == RedisError::None);
    for (Call& c : behind) REQUIRE(rig.send({"BLPOP", "nothing", "5"}, c) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return stopper.call.calls > 0; }));
    rig.loop.run_for(20);
    CHECK(stopper.call.calls == 1);
    CHECK(stopper.call.err == RedisError::Timeout);
    CHECK(rig.client->state() == State::Stopped);
    for (const Call& c : behind) {
        CHECK(c.calls == 1);
        CHECK(c.err == RedisError::Disconnected);
    }
}

TEST_CASE("RedisClient: a subscriber is Ready once subscribed, gets messages, takes no commands") {
    test::RedisServer server;
    SIPR_REQUIRE_REDIS_SERVER(server);
    ClientRig rig;
    rig.make(server.url());
    std::vector<std::string> messages;
    rig.client->subscribe(
        "sipr-unit-channel",
        [](void* ctx, const redisReply* m) noexcept {
            static_cast<std::vector<std::string>*>(ctx)->emplace_back(m->element[2]->str,
                                                                      m->element[2]->len);
        },
        &messages);
    rig.client->start();
    REQUIRE(rig.wait_ready());
    Call refused;
    CHECK(rig.send({"PING"}, refused) == RedisError::Unavailable);
    test::ReplyPtr n = server.command({"PUBLISH", "sipr-unit-channel", "hello"});
    REQUIRE(n);
    CHECK(n->integer == 1);  // Redis counts us as subscribed
    REQUIRE(rig.loop.run_until([&] { return !messages.empty(); }));
    CHECK(messages == std::vector<std::string>{"hello"});

    // Subscribed again on the next connection.
    server.stop();
    REQUIRE(rig.loop.run_until([&] { return !rig.client->ready(); }));
    REQUIRE(server.start());
    REQUIRE(rig.wait_ready());
    n = server.command({"PUBLISH", "sipr-unit-channel", "again"});
    REQUIRE(n);
    CHECK(n->integer == 1);
    REQUIRE(rig.loop.run_until([&] { return messages.size() == 2; }));
    CHECK(messages.back() == "again");
    CHECK(refused.calls == 0);
}

TEST_CASE(
    "RedisClient: retarget() to another node - in-flight Disconnected once, then Ready there") {
    test::RedisServer a, b;
    SIPR_REQUIRE_REDIS_SERVER(a);
    REQUIRE(b.start());
    ClientRig rig;
    REQUIRE(rig.start_ready(a.url()));
    Call inflight;
    REQUIRE(rig.send({"BLPOP", "nothing", "5"}, inflight) == RedisError::None);
    rig.client->retarget("127.0.0.1", a.port());  // the same node: nothing happens
    CHECK(rig.client->ready());
    rig.client->retarget("127.0.0.1", b.port());
    CHECK(inflight.calls == 1);
    CHECK(inflight.err == RedisError::Disconnected);
    CHECK(rig.client->url().port == b.port());
    REQUIRE(rig.wait_ready());
    CHECK(rig.count(State::Backoff) == 0);  // at once, not after a back-off
    Call set;
    REQUIRE(rig.send({"SET", "where", "b"}, set) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return set.calls > 0; }));
    test::ReplyPtr got = b.command({"GET", "where"});
    REQUIRE(got);
    CHECK(got->type == REDIS_REPLY_STRING);
    CHECK(inflight.calls == 1);
}

TEST_CASE("RedisClient: nothing listening - Connecting and Backoff, never Ready; stop() is clean") {
    ClientRig rig;
    location::RedisUrl url;
    url.port = test::free_tcp_port();
    rig.make(url);
    rig.client->start();
    REQUIRE(rig.loop.run_until([&] { return rig.count(State::Backoff) >= 3; }));
    CHECK(rig.count(State::Ready) == 0);
    CHECK(rig.count(State::Handshake) == 0);
    CHECK(rig.count(State::Connecting) >= 3);
    CHECK(!rig.client->last_error().empty());
    rig.client->stop();
    rig.loop.drain();
    CHECK(uv_loop_alive(rig.loop.get()) == 0);
}

// =============================================================================================
// Against a scripted server that misbehaves

TEST_CASE("RedisClient: a server that accepts and never answers - connect timeout, back-off") {
    ClientRig rig;
    ScriptedServer server(rig.loop.get(), [](int, int, const std::vector<std::string>&) {
        return ScriptedServer::Answer{};
    });
    RedisOptions opts = fast_options();
    opts.connect_timeout_ms = 80;
    rig.make(server.url(), opts);
    rig.client->start();
    REQUIRE(rig.loop.run_until([&] { return rig.count(State::Backoff) >= 2; }));
    CHECK(rig.count(State::Ready) == 0);
    CHECK(rig.count(State::Handshake) >= 2);  // TCP connected: it is the PING that went unanswered
    CHECK(rig.client->last_error() == "connect timeout");
    CHECK(server.connections >= 2);
    REQUIRE(!server.commands.empty());
    CHECK(server.commands[0] == std::vector<std::string>{"PING"});
    Call refused;
    CHECK(rig.send({"PING"}, refused) == RedisError::Unavailable);
    CHECK(rig.client->pending() == 0);
}

TEST_CASE("RedisClient: Ready, then no answer - Timeout once, then a reconnect") {
    ClientRig rig;
    ScriptedServer server(rig.loop.get(), after_pong([](int) { return ScriptedServer::Answer{}; }));
    RedisOptions opts = fast_options();
    opts.command_timeout_ms = 50;
    REQUIRE(rig.start_ready(server.url(), opts));
    Call c;
    REQUIRE(rig.send({"GET", "k"}, c) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return c.calls > 0; }));
    CHECK(c.err == RedisError::Timeout);
    REQUIRE(rig.loop.run_until([&] { return rig.count(State::Ready) == 2; }));
    CHECK(c.calls == 1);
    CHECK(server.connections == 2);
}

TEST_CASE("RedisClient: garbage for a reply - Disconnected once, then a reconnect") {
    ClientRig rig;
    ScriptedServer server(rig.loop.get(), after_pong([](int conn) {
                              // The first connection answers garbage, later ones properly.
                              return conn == 0 ? ScriptedServer::Answer{"?what\r\n", false}
                                               : ScriptedServer::Answer{"$1\r\nv\r\n", false};
                          }));
    REQUIRE(rig.start_ready(server.url()));
    Call first, second;
    REQUIRE(rig.send({"GET", "k"}, first) == RedisError::None);
    REQUIRE(rig.send({"GET", "k"}, second) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return second.calls > 0; }));
    CHECK(first.err == RedisError::Disconnected);
    CHECK(second.err == RedisError::Disconnected);
    CHECK(!rig.client->last_error().empty());
    REQUIRE(rig.loop.run_until([&] { return rig.count(State::Ready) == 2; }));
    Call third;
    REQUIRE(rig.send({"GET", "k"}, third) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return third.calls > 0; }));
    CHECK(third.err == RedisError::None);
    CHECK(third.str == "v");
    CHECK(first.calls == 1);
    CHECK(second.calls == 1);
}

TEST_CASE("RedisClient: garbage in the handshake - never Ready") {
    ClientRig rig;
    ScriptedServer server(rig.loop.get(), [](int, int, const std::vector<std::string>&) {
        return ScriptedServer::Answer{"?!?\r\n", false};
    });
    rig.make(server.url());
    rig.client->start();
    REQUIRE(rig.loop.run_until([&] { return rig.count(State::Backoff) >= 2; }));
    CHECK(rig.count(State::Ready) == 0);
    CHECK(!rig.client->last_error().empty());
}

TEST_CASE("RedisClient: the server hangs up mid-reply - Disconnected once, then a reconnect") {
    ClientRig rig;
    ScriptedServer server(rig.loop.get(), after_pong([](int conn) {
                              return conn == 0 ? ScriptedServer::Answer{"$10\r\nabc", true}
                                               : ScriptedServer::Answer{"+OK\r\n", false};
                          }));
    REQUIRE(rig.start_ready(server.url()));
    Call cut;
    REQUIRE(rig.send({"GET", "k"}, cut) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return cut.calls > 0; }));
    CHECK(cut.err == RedisError::Disconnected);
    CHECK(cut.str.empty());
    REQUIRE(rig.loop.run_until([&] { return rig.count(State::Ready) == 2; }));
    CHECK(rig.count(State::Backoff) == 1);
    Call ok;
    REQUIRE(rig.send({"SET", "k", "v"}, ok) == RedisError::None);
    REQUIRE(rig.loop.run_until([&] { return ok.calls > 0; }));
    CHECK(ok.err == RedisError::None);
    CHECK(cut.calls == 1);
}

TEST_CASE("RedisClient: -ERR to AUTH - the handshake fails with Redis's words, and is retried") {
    ClientRig rig;
    ScriptedServer server(rig.loop.get(), [](int, int, const std::vector<std::string>& cmd) {
        if (cmd[0] == "AUTH") return ScriptedServer::Answer{"-ERR invalid password\r\n", false};
        return ScriptedServer::Answer{"+PONG\r\n", false};
    });
    location::RedisUrl url = server.url();
    url.password = "pw";
    rig.make(url);
    rig.client->start();
    REQUIRE(rig.loop.run_until([&] { return server.connections >= 2; }));
    CHECK(rig.count(State::Ready) == 0);
    CHECK(rig.client->last_error() == "handshake failed: ERR invalid password");
    REQUIRE(server.commands.size() >= 2);
    CHECK(server.commands[0] == std::vector<std::string>{"AUTH", "pw"});
    CHECK(server.commands[1] == std::vector<std::string>{"PING"});
}

TEST_SUITE_END();
