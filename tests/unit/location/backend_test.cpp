// location::Backend and the blocking start-up checks against a real redis-server on a private
// port (started and stopped here): a worker's backend becomes Ready and serves a REGISTER and a
// look-up through its narrow stores; the checks' one-line errors name what is wrong.
#include "sipr/location/backend.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "sipr/location/admin.h"

namespace {

using namespace sipr;

uint16_t free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

// redis-server on 127.0.0.1:<port>, without persistence, until destroyed.
class RedisServer {
  public:
    RedisServer() : port_(free_port()) {
        const std::string port = std::to_string(port_);
        pid_ = ::fork();
        if (pid_ == 0) {
            ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--loglevel", "warning",
                     static_cast<char*>(nullptr));
            ::_exit(127);
        }
        location::RedisUrl url = this->url();
        for (int i = 0; i < 100 && !location::check_redis(url, 200).empty(); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ~RedisServer() {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
    }
    [[nodiscard]] location::RedisUrl url() const {
        location::RedisUrl u;
        u.host = "127.0.0.1";
        u.port = port_;
        return u;
    }
    [[nodiscard]] std::string text() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  private:
    uint16_t port_;
    pid_t pid_ = -1;
};

struct Seen {
    std::vector<location::BackendEvent> events;
    std::size_t bindings = 99;
    location::StoreError error = location::StoreError::None;
    bool answered = false;
};

// Runs `loop` until `done` or about two seconds.
template <typename Done>
void run_until(uv_loop_t* loop, Done&& done) {
    for (int i = 0; i < 400 && !done(); ++i) {
        uv_run(loop, UV_RUN_NOWAIT);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

}  // namespace

TEST_CASE("Backend: Ready on redis://, then a REGISTER and a look-up through its stores") {
    RedisServer redis;
    location::RedisSetup setup;
    REQUIRE(location::resolve_redis_setup(redis.text(), "", nullptr, 1000, setup).empty());
    uv_loop_t loop;
    uv_loop_init(&loop);
    location::StoreStats stats;
    Seen seen;
    {
        location::Backend backend(&loop, setup, location::BackendOptions{}, stats);
        backend.on_notice(
            [](void* ctx, const location::BackendNotice& n) noexcept {
                static_cast<Seen*>(ctx)->events.push_back(n.event);
            },
            &seen);
        CHECK(backend.health() == location::Health::Down);
        backend.start();
        run_until(&loop, [&] { return backend.health() == location::Health::Up; });
        REQUIRE(backend.health() == location::Health::Up);
        REQUIRE(seen.events.size() == 1);
        CHECK(seen.events[0] == location::BackendEvent::Ready);
        CHECK(stats.redis_up.get() == 1);

        location::RegisterChanges ch;
        ch.aor = "sip:alice@example.com";
        ch.call_id = "c1";
        ch.cseq = 1;
        location::Binding b;
        b.contact = "sip:alice@192.0.2.1";
        ch.contacts.push_back(
            location::ContactChange{"sip:alice@192.0.2.1", 60, location::pack_binding_tail(b)});
        REQUIRE(backend.registrations().apply_register(
                    ch,
                    [](void* ctx, const location::RegisterReply& r) noexcept {
                        auto* s = static_cast<Seen*>(ctx);
                        s->answered = true;
                        s->error = r.error;
                        s->bindings = r.bindings.size();
                    },
                    &seen) == location::StoreError::None);
        run_until(&loop, [&] { return seen.answered; });
        CHECK(seen.error == location::StoreError::None);
        CHECK(seen.bindings == 1);

        seen.answered = false;
        REQUIRE(backend.lookups().lookup(
                    "sip:alice@example.com",
                    [](void* ctx, const location::LookupReply& r) noexcept {
                        auto* s = static_cast<Seen*>(ctx);
                        s->answered = true;
                        s->error = r.error;
                        s->bindings = r.bindings.size();
                    },
                    &seen) == location::StoreError::None);
        run_until(&loop, [&] { return seen.answered; });
        CHECK(seen.error == location::StoreError::None);
        CHECK(seen.bindings == 1);

        // What sip-locctl show reads is what the daemon wrote.
        location::Admin admin;
        REQUIRE(admin.open(redis.url(), false, 1000).empty());
        std::vector<location::StoredBinding> stored;
        std::size_t garbage = 0;
        REQUIRE(admin.bindings("sip:alice@example.com", stored, garbage).empty());
        REQUIRE(stored.size() == 1);
        CHECK(stored[0].key == "sip:alice@192.0.2.1");
        CHECK(stored[0].binding.contact == "sip:alice@192.0.2.1");
        CHECK(garbage == 0);

        backend.stop();
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("start-up checks: one line naming what is wrong") {
    RedisServer redis;
    location::RedisSetup setup;
    location::RedisUrl closed = redis.url();
    closed.port = free_port();
    CHECK(location::check_redis(closed, 500).rfind("cannot reach Redis at", 0) == 0);
    // A password given to a Redis that has none is refused, and the line never shows it.
    location::RedisUrl with_password = redis.url();
    with_password.password = "s3cret-pw";
    std::string why = location::check_redis(with_password, 500);
    CHECK(why.rfind("Redis refused the password (AUTH)", 0) == 0);
    CHECK(why.find("s3cret-pw") == std::string::npos);
    CHECK(location::resolve_redis_setup(
              redis.text(), "redis://127.0.0.1:" + std::to_string(closed.port), nullptr, 500, setup)
              .rfind("--redis-read: cannot reach Redis", 0) == 0);
    // The tracking table: an unbounded node is bounded, and says so once.
    std::string note;
    CHECK(location::bound_tracking_table(redis.url(), 1000, 500, note).empty());
    CHECK(note.find("to 1000") != std::string::npos);
    note.clear();
    CHECK(location::bound_tracking_table(redis.url(), 1000, 500, note).empty());
    CHECK(note.empty());
}

TEST_CASE("redis_is_local: the node look-ups go to, on a loopback address or localhost") {
    location::RedisSetup s;
    for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "localhost"}) {
        s.primary.host = host;
        CHECK(location::redis_is_local(s));
    }
    for (const char* host : {"10.0.0.5", "redis.example.net", "::2", "128.0.0.1"}) {
        s.primary.host = host;
        CHECK_FALSE(location::redis_is_local(s));
    }
    s.primary.host = "127.0.0.1";  // --redis-read decides where look-ups go
    s.has_read = true;
    s.read.host = "10.0.0.6";
    CHECK_FALSE(location::redis_is_local(s));
    s.read.host = "::1";
    CHECK(location::redis_is_local(s));
}
