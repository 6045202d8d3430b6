// net layer: endpoints, SO_REUSEPORT sockets with batched receive on a uv_loop, worker threads.
// Real sockets on loopback only.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "sipr/net/endpoint.h"
#include "sipr/net/udp_socket.h"
#include "sipr/net/worker_group.h"

using namespace sipr::net;

namespace {

struct Collector : DatagramHandler {
    std::vector<std::string> got;
    std::vector<uint16_t> ports;
    UdpSocket* echo = nullptr;
    void on_datagram(std::string_view bytes, const sockaddr* from) noexcept override {
        got.emplace_back(bytes);
        ports.push_back(port_of(from));
        if (echo != nullptr) (void)echo->send(bytes, from);
    }
};

// Runs `loop` until `done()` or 2 s pass.
template <typename Done>
void run_until(uv_loop_t* loop, Done done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(loop, UV_RUN_NOWAIT);
}

void close_loop(uv_loop_t* loop) {
    uv_run(loop, UV_RUN_DEFAULT);  // runs the close callbacks
    CHECK(uv_loop_close(loop) == 0);
}

int client_socket(int family) {
    int fd = ::socket(family, SOCK_DGRAM, 0);
    REQUIRE(fd >= 0);
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

}  // namespace

TEST_CASE("parse_endpoint: IPv4, bracketed IPv6, localhost; rejects the rest") {
    sockaddr_storage ss{};
    REQUIRE(parse_endpoint("127.0.0.1:5060", ss));
    CHECK(ss.ss_family == AF_INET);
    CHECK(port_of(reinterpret_cast<sockaddr*>(&ss)) == 5060);
    CHECK(to_string(reinterpret_cast<sockaddr*>(&ss)) == "127.0.0.1:5060");
    REQUIRE(parse_endpoint("[::1]:5070", ss));
    CHECK(ss.ss_family == AF_INET6);
    CHECK(to_string(reinterpret_cast<sockaddr*>(&ss)) == "[::1]:5070");
    REQUIRE(parse_endpoint("localhost:0", ss));
    CHECK(ss.ss_family == AF_INET);
    CHECK(port_of(reinterpret_cast<sockaddr*>(&ss)) == 0);
    char ip[64];
    std::size_t n = format_ip(reinterpret_cast<sockaddr*>(&ss), ip);
    CHECK(std::string(ip, n) == "127.0.0.1");

    CHECK_FALSE(parse_endpoint("127.0.0.1", ss));
    CHECK_FALSE(parse_endpoint("127.0.0.1:65536", ss));
    CHECK_FALSE(parse_endpoint("127.0.0.1:", ss));
    CHECK_FALSE(parse_endpoint("::1:5060", ss));  // IPv6 needs brackets
    CHECK_FALSE(parse_endpoint("[::1]5060", ss));
    CHECK_FALSE(parse_endpoint("example.com:5060", ss));  // no DNS on start-up paths
    CHECK_FALSE(parse_endpoint("", ss));
    char small[4];
    CHECK(format_ip(reinterpret_cast<sockaddr*>(&ss), small) == 0);
}

TEST_CASE("format_ip: IPv4 by hand agrees with inet_ntop on every octet value") {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    char got[INET6_ADDRSTRLEN];
    char want[INET6_ADDRSTRLEN];
    for (unsigned v = 0; v < 256; ++v) {
        for (unsigned pos = 0; pos < 4; ++pos) {
            unsigned char b[4] = {10, 0, 99, 255};
            b[pos] = static_cast<unsigned char>(v);
            std::memcpy(&sin.sin_addr, b, 4);
            std::size_t n = format_ip(reinterpret_cast<sockaddr*>(&sin), got);
            REQUIRE(inet_ntop(AF_INET, &sin.sin_addr, want, sizeof want) != nullptr);
            REQUIRE(std::string(got, n) == want);
        }
    }
    char exact[15];  // "255.255.255.255" fits exactly; one byte less does not
    sin.sin_addr.s_addr = 0xffffffffu;
    CHECK(format_ip(reinterpret_cast<sockaddr*>(&sin), exact) == 15);
    CHECK(format_ip(reinterpret_cast<sockaddr*>(&sin), std::span<char>(exact, 14)) == 0);
}

TEST_CASE("UdpSocket: two sockets share one port (SO_REUSEPORT) and receive in batches") {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    sockaddr_storage addr{};
    REQUIRE(parse_endpoint("127.0.0.1:0", addr));
    UdpSocket a, b;
    REQUIRE(a.open(&loop, reinterpret_cast<sockaddr*>(&addr)) == 0);
    sockaddr_storage bound = a.local_address();
    uint16_t port = port_of(reinterpret_cast<sockaddr*>(&bound));
    REQUIRE(port != 0);
    CHECK(b.open(&loop, reinterpret_cast<sockaddr*>(&bound)) == 0);  // same port, second socket
    CHECK(a.using_recvmmsg());

    Collector ca, cb;
    ca.echo = &a;
    cb.echo = &b;
    REQUIRE(a.start(&ca) == 0);
    REQUIRE(b.start(&cb) == 0);

    // Many clients (different source ports) so the kernel's hash spreads them over both sockets.
    constexpr int kClients = 32;
    std::vector<int> fds;
    for (int i = 0; i < kClients; ++i) {
        int fd = client_socket(AF_INET);
        std::string msg = "hello " + std::to_string(i);
        REQUIRE(::sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&bound),
                         sizeof(sockaddr_in)) == static_cast<ssize_t>(msg.size()));
        fds.push_back(fd);
    }
    run_until(&loop, [&] { return ca.got.size() + cb.got.size() == kClients; });
    CHECK(ca.got.size() + cb.got.size() == kClients);
    CHECK(!ca.got.empty());
    CHECK(!cb.got.empty());

    // Each client gets its own datagram echoed back by whichever socket received it.
    for (int i = 0; i < kClients; ++i) {
        char buf[64];
        ssize_t n = ::recv(fds[static_cast<std::size_t>(i)], buf, sizeof buf, 0);
        REQUIRE(n > 0);
        CHECK(std::string(buf, static_cast<std::size_t>(n)) == "hello " + std::to_string(i));
        ::close(fds[static_cast<std::size_t>(i)]);
    }

    // After stop() nothing is delivered; close() twice is harmless.
    a.stop();
    b.stop();
    int fd = client_socket(AF_INET);
    ::sendto(fd, "late", 4, 0, reinterpret_cast<sockaddr*>(&bound), sizeof(sockaddr_in));
    std::size_t before = ca.got.size() + cb.got.size();
    run_until(&loop, [] { return false; });
    CHECK(ca.got.size() + cb.got.size() == before);
    ::close(fd);
    a.close();
    a.close();
    b.close();
    close_loop(&loop);
}

TEST_CASE("UdpSocket: spread_randomly puts one source socket's datagrams on every socket") {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    sockaddr_storage addr{};
    REQUIRE(parse_endpoint("127.0.0.1:0", addr));
    constexpr unsigned kSockets = 3;
    UdpSocket socks[kSockets];
    Collector got[kSockets];
    REQUIRE(socks[0].open(&loop, reinterpret_cast<sockaddr*>(&addr)) == 0);
    sockaddr_storage bound = socks[0].local_address();
    for (unsigned i = 1; i < kSockets; ++i)
        REQUIRE(socks[i].open(&loop, reinterpret_cast<sockaddr*>(&bound)) == 0);
    CHECK(socks[0].spread_randomly(0) == UV_EINVAL);
    for (auto& s : socks) REQUIRE(s.spread_randomly(kSockets) == 0);
    for (unsigned i = 0; i < kSockets; ++i) REQUIRE(socks[i].start(&got[i]) == 0);

    // One client socket: without the program the flow hash puts all of it on one socket.
    constexpr std::size_t kCount = 600;
    int fd = client_socket(AF_INET);
    auto total = [&] { return got[0].got.size() + got[1].got.size() + got[2].got.size(); };
    for (std::size_t i = 0; i < kCount; ++i) {
        REQUIRE(::sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&bound), sizeof(sockaddr_in)) ==
                1);
        if (i % 50 == 49) run_until(&loop, [&] { return total() == i + 1; });
    }
    run_until(&loop, [&] { return total() == kCount; });
    CHECK(total() == kCount);
    for (auto& g : got) CHECK(g.got.size() >= kCount / kSockets / 2);  // 200 expected each
    ::close(fd);

    UdpSocket closed;
    CHECK(closed.spread_randomly(2) == UV_EINVAL);  // not open
    for (auto& s : socks) s.close();
    close_loop(&loop);
}

TEST_CASE("UdpSocket: a port taken without SO_REUSEPORT is refused with an error, nothing leaks") {
    int blocker = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(blocker, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    socklen_t len = sizeof sin;
    ::getsockname(blocker, reinterpret_cast<sockaddr*>(&sin), &len);

    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    UdpSocket s;
    CHECK(s.open(&loop, reinterpret_cast<sockaddr*>(&sin)) == -EADDRINUSE);
    CHECK(s.send("x", reinterpret_cast<sockaddr*>(&sin)) == UV_EINVAL);
    close_loop(&loop);
    ::close(blocker);
}

namespace {

// Handler that answers each datagram through the send queue, written in place or copied.
struct QueueEcho : DatagramHandler {
    UdpSocket* sock = nullptr;
    bool in_place = false;
    std::size_t received = 0;
    std::size_t failed = 0;
    void on_datagram(std::string_view bytes, const sockaddr* from) noexcept override {
        ++received;
        if (in_place) {
            std::span<char> buf = sock->send_buffer();
            REQUIRE(buf.size() >= UdpSocket::kMaxDatagram);
            std::memcpy(buf.data(), bytes.data(), bytes.size());
            CHECK(sock->queue(std::string_view(buf.data(), bytes.size()), from));
        } else {
            CHECK(sock->queue(bytes, from));
        }
    }
    void on_send_failed(std::size_t n) noexcept override { failed += n; }
};

// "m<i>" followed by `pad` x's.
std::string numbered(int i, std::size_t pad) {
    std::string s = "m";
    s += std::to_string(i);
    s.append(pad, 'x');
    return s;
}

// Sends `n` numbered datagrams from one client and returns what came back, in order.
std::vector<std::string> echo_round(uv_loop_t* loop, UdpSocket& s, QueueEcho& h, int n,
                                    std::size_t pad) {
    sockaddr_storage bound = s.local_address();
    int fd = client_socket(AF_INET);
    int big = 8 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    for (int i = 0; i < n; ++i) {
        std::string msg = numbered(i, pad);
        REQUIRE(::sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&bound),
                         sizeof(sockaddr_in)) == static_cast<ssize_t>(msg.size()));
    }
    run_until(loop, [&] { return h.received == static_cast<std::size_t>(n); });
    uv_run(loop, UV_RUN_NOWAIT);  // one more turn: its prepare phase flushes the queue
    std::vector<std::string> back;
    std::vector<char> buf(70000);
    for (int i = 0; i < n; ++i) {
        ssize_t got = ::recv(fd, buf.data(), buf.size(), 0);
        if (got < 0) break;
        back.emplace_back(buf.data(), static_cast<std::size_t>(got));
    }
    ::close(fd);
    return back;
}

}  // namespace

TEST_CASE("UdpSocket: queued datagrams leave by sendmmsg before the loop waits, in order, whole") {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    sockaddr_storage addr{};
    REQUIRE(parse_endpoint("127.0.0.1:0", addr));
    UdpSocket s;
    REQUIRE(s.open(&loop, reinterpret_cast<sockaddr*>(&addr)) == 0);
    QueueEcho h;
    h.sock = &s;
    REQUIRE(s.start(&h) == 0);

    SUBCASE("copied: more than one batch in one turn") {
        const int n = static_cast<int>(UdpSocket::kSendBatch) * 3 + 5;
        auto back = echo_round(&loop, s, h, n, 100);
        REQUIRE(back.size() == static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i) CHECK(back[static_cast<std::size_t>(i)] == numbered(i, 100));
    }
    SUBCASE("written in place") {
        h.in_place = true;
        auto back = echo_round(&loop, s, h, 200, 300);
        REQUIRE(back.size() == 200);
        for (int i = 0; i < 200; ++i) CHECK(back[static_cast<std::size_t>(i)] == numbered(i, 300));
    }
    SUBCASE("large datagrams overflow the arena and are flushed early, none lost") {
        // 20 x 60 KB is more than the 256 KB arena: the queue flushes when it runs short.
        auto back = echo_round(&loop, s, h, 20, 60000);
        REQUIRE(back.size() == 20);
        for (int i = 0; i < 20; ++i) CHECK(back[static_cast<std::size_t>(i)] == numbered(i, 60000));
    }
    SUBCASE("nothing leaves before the flush point") {
        int fd = client_socket(AF_INET);
        timeval tv{0, 100000};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_storage me{};
        socklen_t len = sizeof me;
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(sockaddr_in)) == 0);
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len);
        CHECK(s.queue("early", reinterpret_cast<sockaddr*>(&me)));
        char buf[16];
        CHECK(::recv(fd, buf, sizeof buf, 0) == -1);  // still queued
        s.flush();
        CHECK(::recv(fd, buf, sizeof buf, 0) == 5);
        ::close(fd);
    }
    CHECK(h.failed == 0);
    s.close();
    close_loop(&loop);
}

TEST_CASE("UdpSocket: IPv6 loopback") {
    int probe = ::socket(AF_INET6, SOCK_DGRAM, 0);
    sockaddr_in6 six{};
    six.sin6_family = AF_INET6;
    six.sin6_addr = in6addr_loopback;
    bool have_v6 = probe >= 0 && ::bind(probe, reinterpret_cast<sockaddr*>(&six), sizeof six) == 0;
    if (probe >= 0) ::close(probe);
    if (!have_v6) {
        MESSAGE("no IPv6 loopback on this machine; skipped");
        return;
    }
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    sockaddr_storage addr{};
    REQUIRE(parse_endpoint("[::1]:0", addr));
    UdpSocket s;
    REQUIRE(s.open(&loop, reinterpret_cast<sockaddr*>(&addr)) == 0);
    Collector c;
    c.echo = &s;
    REQUIRE(s.start(&c) == 0);
    sockaddr_storage bound = s.local_address();
    int fd = client_socket(AF_INET6);
    REQUIRE(::sendto(fd, "v6", 2, 0, reinterpret_cast<sockaddr*>(&bound), sizeof(sockaddr_in6)) ==
            2);
    run_until(&loop, [&] { return !c.got.empty(); });
    REQUIRE(c.got.size() == 1);
    CHECK(c.got[0] == "v6");
    char buf[8];
    CHECK(::recv(fd, buf, sizeof buf, 0) == 2);
    ::close(fd);
    s.close();
    close_loop(&loop);
}

TEST_CASE("WorkerGroup: every worker runs its own loop; post() runs there; stop() joins") {
    WorkerGroup g;
    std::atomic<int> setups{0}, stops{0}, posted{0};
    std::vector<std::thread::id> ids(3);
    REQUIRE(g.start(
        3,
        [&](std::size_t i, uv_loop_t* loop) {
            CHECK(loop != nullptr);
            ids[i] = std::this_thread::get_id();
            ++setups;
            return true;
        },
        [&](std::size_t) { ++stops; }));
    CHECK(setups == 3);
    CHECK(g.size() == 3);
    CHECK(ids[0] != ids[1]);
    CHECK(ids[1] != ids[2]);
    std::atomic<bool> on_right_thread{true};
    for (std::size_t i = 0; i < 3; ++i)
        g.post(i, [&, i] {
            if (std::this_thread::get_id() != ids[i]) on_right_thread = false;
            ++posted;
        });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (posted < 3 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(posted == 3);
    CHECK(on_right_thread);
    g.stop();
    CHECK(stops == 3);
    g.stop();  // idempotent
    CHECK(stops == 3);
}

TEST_CASE("WorkerGroup: every loop runs after start(), over many starts") {
    // start() waited on a condition variable that lived in its own frame, and a worker
    // notified it after unlocking: start() could return first, and that worker then called
    // notify_all() on a dead object and could hang there, its loop never run (seen once in
    // CI: one sip-redirectd worker never answered). The window is a few instructions wide:
    // this test, which asserts the property over many starts, did not catch it in 1,200 starts
    // here before the fix. A worker whose loop does not run within 5 s ends the test binary
    // (stop() would wait for it for ever).
    constexpr int kStarts = 300;
    constexpr std::size_t kWorkers = 8;
    for (int round = 0; round < kStarts; ++round) {
        WorkerGroup g;
        REQUIRE(g.start(
            kWorkers, [](std::size_t, uv_loop_t*) { return true; }, [](std::size_t) {}));
        std::atomic<std::size_t> ran{0};
        for (std::size_t i = 0; i < kWorkers; ++i) g.post(i, [&ran] { ++ran; });
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (ran < kWorkers && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        if (ran != kWorkers) {
            FAIL_CHECK("start ", round, ": only ", ran.load(), " of ", kWorkers,
                       " worker loops ran a posted job within 5 s");
            std::fflush(nullptr);
            std::_Exit(1);
        }
        g.stop();
    }
}

TEST_CASE("WorkerGroup: a failing setup makes start() false and stops the rest") {
    WorkerGroup g;
    std::atomic<int> stops{0};
    CHECK_FALSE(g.start(
        2, [](std::size_t i, uv_loop_t*) { return i == 0; }, [&](std::size_t) { ++stops; }));
    CHECK(stops == 2);
}
