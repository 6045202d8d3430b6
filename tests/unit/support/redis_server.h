#pragma once
// Test support for the Redis-facing units: a real redis-server on a free private port of
// 127.0.0.1, started and stopped by the test (by PID), and a small driver for a uv_loop.
//
// RedisServer: no persistence, no log; start() waits (at most 5 s) until the server answers PING
// and stop() kills it and reaps it, so a test can kill and restart a server on the same port.
// A test that needs one starts with SIPR_REQUIRE_REDIS_SERVER(), which ends the test with a
// doctest message, as a pass, when no redis-server is installed (tools/packages.sh installs
// one, so CI always runs these tests).
//
// TestLoop: a uv_loop_t the test drives with run_until(predicate, deadline); a 2 ms timer keeps
// each turn short, so the predicate is looked at even while nothing else happens. The destructor
// closes whatever handles are left and the loop itself.
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sipr/location/redis_client.h"

extern char** environ;

namespace sipr::test {

// The redis-server on PATH, or "" when there is none.
inline std::string redis_server_path() {
    const char* path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        std::size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        std::string candidate = dirs.substr(start, end - start) + "/redis-server";
        if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
        start = end + 1;
    }
    return {};
}

// A TCP port of 127.0.0.1 free right now (the kernel's choice for port 0).
inline uint16_t free_tcp_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    ::close(fd);
    return ntohs(a.sin_port);
}

struct ReplyDeleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

class RedisServer {
  public:
    // `extra`: more redis-server arguments, e.g. {"--requirepass", "secret"}.
    explicit RedisServer(std::vector<std::string> extra = {}) : extra_(std::move(extra)) {}
    ~RedisServer() { stop(); }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    // Starts the server (again on the same port once it had one); true once it answers PING.
    bool start() {
        if (pid_ > 0) return true;
        std::string exe = redis_server_path();
        if (exe.empty()) return false;
        for (int attempt = 0; attempt < 3; ++attempt) {
            const bool fixed = port_ != 0;
            if (!fixed) port_ = free_tcp_port();
            if (spawn(exe) && wait_ready()) return true;
            stop();
            if (fixed) return false;  // a restart keeps its port
            port_ = 0;                // taken meanwhile: another one
        }
        return false;
    }

    // Kills the server (SIGKILL: no goodbye to the clients) and reaps it.
    void stop() noexcept {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }

    [[nodiscard]] bool running() const noexcept { return pid_ > 0; }
    [[nodiscard]] uint16_t port() const noexcept { return port_; }
    [[nodiscard]] location::RedisUrl url() const {
        location::RedisUrl u;
        u.host = "127.0.0.1";
        u.port = port_;
        return u;
    }

    // One command on a blocking connection of its own (set-up and inspection); nullptr when the
    // server cannot be reached. `password` authenticates first when not empty.
    ReplyPtr command(const std::vector<std::string>& args, const std::string& password = {}) const {
        timeval tv{2, 0};
        std::unique_ptr<redisContext, void (*)(redisContext*)> c(
            redisConnectWithTimeout("127.0.0.1", port_, tv), &redisFree);
        if (!c || c->err != 0) return nullptr;
        if (!password.empty()) {
            ReplyPtr auth(
                static_cast<redisReply*>(redisCommand(c.get(), "AUTH %s", password.c_str())));
            if (!auth || auth->type == REDIS_REPLY_ERROR) return nullptr;
        }
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const std::string& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        return ReplyPtr(static_cast<redisReply*>(
            redisCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
    }

  private:
    bool spawn(const std::string& exe) {
        std::string port = std::to_string(port_);
        std::vector<std::string> args = {
            exe,  "--port",       port,      "--bind",    "127.0.0.1", "--save",
            "",   "--appendonly", "no",      "--dir",     "/tmp",      "--protected-mode",
            "no", "--loglevel",   "warning", "--logfile", ""};
        args.insert(args.end(), extra_.begin(), extra_.end());
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        pid_t pid = -1;
        int rc = posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0) return false;
        pid_ = pid;
        return true;
    }

    bool wait_ready() {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // died (port taken?)
                pid_ = -1;
                return false;
            }
            timeval tv{0, 200'000};
            redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
            if (c != nullptr && c->err == 0) {
                ReplyPtr r(static_cast<redisReply*>(redisCommand(c, "PING")));
                redisFree(c);
                // PONG, or NOAUTH from a server with a password: either way it serves.
                if (r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR))
                    return true;
            } else if (c != nullptr) {
                redisFree(c);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return false;
    }

    std::vector<std::string> extra_;
    uint16_t port_ = 0;
    pid_t pid_ = -1;
};

// Ends the test (as a pass, with a message) when redis-server is not installed; fails it when
// the server does not start.
#define SIPR_REQUIRE_REDIS_SERVER(server)                                \
    do {                                                                 \
        if (::sipr::test::redis_server_path().empty()) {                 \
            MESSAGE("redis-server is not installed: test skipped");      \
            return;                                                      \
        }                                                                \
        REQUIRE_MESSAGE((server).start(), "redis-server did not start"); \
    } while (false)

class TestLoop {
  public:
    TestLoop() {
        REQUIRE(uv_loop_init(&loop_) == 0);
        uv_timer_init(&loop_, &wake_);
    }
    ~TestLoop() {
        uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
        // What the test closed finishes closing; what it left open is closed here.
        uv_run(&loop_, UV_RUN_NOWAIT);
        if (uv_loop_close(&loop_) == UV_EBUSY) {
            uv_walk(
                &loop_,
                [](uv_handle_t* h, void*) {
                    if (uv_is_closing(h) == 0) uv_close(h, nullptr);
                },
                nullptr);
            uv_run(&loop_, UV_RUN_DEFAULT);
            uv_loop_close(&loop_);
        }
    }
    TestLoop(const TestLoop&) = delete;
    TestLoop& operator=(const TestLoop&) = delete;

    [[nodiscard]] uv_loop_t* get() noexcept { return &loop_; }

    // Runs the loop until `done()` holds or `timeout_ms` passed; returns done().
    template <typename Pred>
    bool run_until(Pred&& done, uint64_t timeout_ms = 3000) {
        const uint64_t deadline = uv_hrtime() + timeout_ms * 1'000'000;
        uv_timer_start(
            &wake_, [](uv_timer_t*) {}, 2, 2);
        bool ok = done();
        while (!ok && uv_hrtime() < deadline) {
            uv_run(&loop_, UV_RUN_ONCE);
            ok = done();
        }
        uv_timer_stop(&wake_);
        return ok;
    }
    // Runs the loop for `ms` milliseconds.
    void run_for(uint64_t ms) {
        run_until([] { return false; }, ms);
    }
    // Runs until no handle is closing any more (after stop() of a client).
    void drain() { run_for(5); }

  private:
    uv_loop_t loop_{};
    uv_timer_t wake_{};
};

}  // namespace sipr::test
