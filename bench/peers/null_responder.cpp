// null-responder: the ceiling of this machine for the benchmark. Answers every SIP request it
// receives with a fixed 302 (no parsing beyond copying the Via, From, To, Call-ID and CSeq lines,
// no look-up), in batches of recvmmsg/sendmmsg, one SO_REUSEPORT socket per thread. Whatever a real
// redirect server adds on top of this is its own cost.
//
//   null-responder --listen 127.0.0.1:5090 [--threads 2]
//
// Stops on SIGTERM or SIGINT.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <thread>
#include <vector>

#include "sipr/net/endpoint.h"

namespace {

constexpr std::size_t kBatch = 64;
constexpr std::size_t kSize = 4096;
std::atomic<bool> g_stop{false};

bool starts_with_header(std::string_view line, std::string_view name) {
    if (line.size() <= name.size() || (line[name.size()] != ':' && line[name.size()] != ' '))
        return false;
    return strncasecmp(line.data(), name.data(), name.size()) == 0;
}

// The lines of the request that a response must echo (RFC 3261 §8.2.6.2).
bool echoed(std::string_view line) {
    for (std::string_view n : {"Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq"})
        if (starts_with_header(line, n)) return true;
    return false;
}

std::size_t answer(std::string_view req, char* out) {
    static constexpr std::string_view kHead = "SIP/2.0 302 Moved Temporarily\r\n";
    static constexpr std::string_view kTail =
        "Contact: <sip:null@127.0.0.1:5999>;q=1;expires=3600\r\nContent-Length: 0\r\n\r\n";
    std::size_t n = 0;
    std::memcpy(out, kHead.data(), kHead.size());
    n += kHead.size();
    std::size_t pos = req.find("\r\n");
    while (pos != std::string_view::npos) {
        std::size_t start = pos + 2;
        std::size_t end = req.find("\r\n", start);
        if (end == std::string_view::npos || end == start) break;  // end of the headers
        std::string_view line = req.substr(start, end - start);
        if (echoed(line) && n + line.size() + 2 + kTail.size() < kSize) {
            std::memcpy(out + n, line.data(), line.size());
            n += line.size();
            out[n++] = '\r';
            out[n++] = '\n';
        }
        pos = end;
    }
    std::memcpy(out + n, kTail.data(), kTail.size());
    return n + kTail.size();
}

void serve(int fd) {
    std::vector<std::array<char, kSize>> in(kBatch), out(kBatch);
    std::array<sockaddr_storage, kBatch> from{};
    std::array<iovec, kBatch> iov{}, oiov{};
    std::array<mmsghdr, kBatch> msgs{}, replies{};
    while (!g_stop.load(std::memory_order_relaxed)) {
        for (std::size_t i = 0; i < kBatch; ++i) {
            iov[i] = {in[i].data(), kSize};
            msgs[i] = {};
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        int got = ::recvmmsg(fd, msgs.data(), kBatch, MSG_WAITFORONE, nullptr);
        if (got <= 0) continue;  // the receive timeout: look at the stop flag
        unsigned n = 0;
        for (int i = 0; i < got; ++i) {
            std::string_view req(in[static_cast<std::size_t>(i)].data(),
                                 msgs[static_cast<std::size_t>(i)].msg_len);
            if (req.starts_with("SIP/2.0 ") || req.starts_with("ACK "))
                continue;  // answer requests only
            std::size_t len = answer(req, out[n].data());
            oiov[n] = {out[n].data(), len};
            replies[n] = {};
            replies[n].msg_hdr.msg_iov = &oiov[n];
            replies[n].msg_hdr.msg_iovlen = 1;
            replies[n].msg_hdr.msg_name = &from[static_cast<std::size_t>(i)];
            replies[n].msg_hdr.msg_namelen = msgs[static_cast<std::size_t>(i)].msg_hdr.msg_namelen;
            ++n;
        }
        unsigned done = 0;
        while (done < n) {
            int s = ::sendmmsg(fd, replies.data() + done, n - done, 0);
            if (s <= 0) break;
            done += static_cast<unsigned>(s);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string listen = "127.0.0.1:5090";
    unsigned threads = 2;
    CLI::App cli{
        "null-responder: answers every SIP request with a fixed 302 (the benchmark's ceiling)",
        "null-responder"};
    cli.add_option("--listen", listen, "UDP host:port")->capture_default_str();
    cli.add_option("--threads", threads, "threads, one SO_REUSEPORT socket each")
        ->check(CLI::Range(1u, 64u))
        ->capture_default_str();
    CLI11_PARSE(cli, argc, argv);

    sockaddr_storage addr{};
    if (!sipr::net::parse_endpoint(listen, addr)) {
        std::fprintf(stderr, "null-responder: --listen '%s' is not host:port\n", listen.c_str());
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    std::vector<int> fds;
    for (unsigned t = 0; t < threads; ++t) {
        int fd = ::socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int one = 1;
        timeval tv{0, 200'000};
        int buf = 4 << 20;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
        const auto* sa = reinterpret_cast<const sockaddr*>(&addr);
        if (fd < 0 || ::bind(fd, sa, sipr::net::sockaddr_len(sa)) != 0) {
            std::fprintf(stderr, "null-responder: cannot listen on %s: %s\n", listen.c_str(),
                         std::strerror(errno));
            return 1;
        }
        fds.push_back(fd);
    }
    std::vector<std::thread> pool;
    for (int fd : fds) pool.emplace_back(serve, fd);
    int sig = 0;
    sigwait(&set, &sig);
    g_stop = true;
    for (auto& t : pool) t.join();
    for (int fd : fds) ::close(fd);
    return 0;
}
