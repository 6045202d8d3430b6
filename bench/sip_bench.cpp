// sip-bench: drives a SIP redirect server or registrar and reports throughput, latency and the
// server's CPU per response (DESIGN §8, bench/README.md).
//
//   sip-bench --target 127.0.0.1:5070 [--registrar 127.0.0.1:5060 | --populate redis --redis URL]
//             --aors 10000 [--window 64 | --rate R] --duration 10 [--threads 2] [--sockets 16]
//             [--zipf 1.0] [--register [--auth-password P]] [--pid PID]... [--json]
//
// Population: sip:bench<i>@<domain> -> sip:bench<i>@127.0.0.1:5999, through the registrar
// (REGISTERs, any registrar: ours or a peer's), or written straight into our Redis schema
// (--populate redis), or not at all. Then INVITEs (or, with --register, REGISTERs) go out from
// --threads threads over --sockets client sockets in all (default one per thread; a thread with
// several sends each batch from its next socket in turn), in sendmmsg/recvmmsg batches: closed
// loop with --window requests outstanding in all, or open loop at --rate per second in all. Each
// socket has its own source port, so a server's SO_REUSEPORT hash sees as many sources as
// --sockets: 1 is a load balancer in front of it, 16 a tier fed by 16 SBCs and proxies. The AOR of
// an INVITE is uniform over the N AORs or Zipf-distributed (--zipf S, rank 0 most popular). Every
// response is matched to its request by Call-ID; a request unanswered for 2 s is lost. Latency goes
// into a log-linear histogram (HDR-style, 1/64 relative precision; a percentile is the upper edge
// of its bucket). The CPU seconds of the --pid processes are read from /proc/PID/stat before and
// after. With --register --auth-password, a REGISTER challenged (401/407) is sent again with
// digest credentials and counts as one request until its final answer (bench/README.md).
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_digest.h"
#include "bench_stats.h"
#include "sipr/base/ascii.h"
#include "sipr/location/admin.h"
#include "sipr/location/binding.h"
#include "sipr/location/redis_client.h"
#include "sipr/location/schema.h"
#include "sipr/net/endpoint.h"
#include "sipr/registrar/digest.h"
#include "sipr/registrar/registrar.h"
#include "sipr/sip/headers.h"
#include "sipr/sip/message.h"

namespace {

using sipr::bench::AorPicker;
using sipr::bench::Challenge;
using sipr::bench::Histogram;
using sipr::bench::offers_auth;
using sipr::bench::parse_challenge;
using sipr::bench::share;
using sipr::bench::SocketRing;
using sipr::registrar::DigestAlgorithm;
constexpr std::size_t kBatch = 32;
constexpr int64_t kLostAfterUs = 2'000'000;
constexpr std::string_view kContactHost = "127.0.0.1:5999";

int64_t now_us() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

// utime + stime of a process, seconds; -1 when it cannot be read.
double cpu_seconds(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto close = s.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream in(s.substr(close + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) utime = std::stod(field);
        if (i == 15) stime = std::stod(field);
    }
    return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double self_cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Digest authentication of REGISTERs (--auth-password): every 401/407 is answered with the same
// REGISTER (same Call-ID, next CSeq) carrying credentials, as a phone does (RFC 3261 §22.2).
struct AuthConfig {
    std::string password;  // empty: challenges are final answers like any other
    bool pick = false;     // answer only the challenge with `algorithm` (--auth-algorithm)
    DigestAlgorithm algorithm = DigestAlgorithm::Md5;
    // Later REGISTERs of an AOR carry credentials on the last nonce it was given, nc one higher
    // (RFC 7616 §3.4; sip-registrard accepts any nc above the highest seen with that nonce).
    // False: every REGISTER goes without and is challenged.
    bool reuse = true;
    std::string realm;  // of the subscribers --populate redis writes (default: --domain)
};

struct Options {
    std::string target, registrar;
    std::string populate = "registrar";
    std::string redis = "redis://127.0.0.1:6379";
    uint32_t aors = 1000;
    uint32_t window = 64;
    double rate = 0;
    double duration = 10;
    unsigned threads = 1;
    unsigned sockets = 0;  // 0: one per thread
    double zipf = 0;
    bool register_mode = false;
    bool json = false;
    std::vector<int> pids;
    std::string domain = "bench.example";
    AuthConfig auth;
};

struct Result {
    // sent: requests started (a REGISTER sent again with credentials is the same request);
    // challenges: 401/407s answered with credentials (not answers: the request goes on).
    uint64_t sent = 0, lost = 0, answered = 0, challenges = 0;
    std::map<int, uint64_t> by_status;
    Histogram latency;
    double seconds = 0;

    void merge(const Result& o) {
        sent += o.sent;
        lost += o.lost;
        answered += o.answered;
        challenges += o.challenges;
        for (const auto& [code, n] : o.by_status) by_status[code] += n;
        latency.merge(o.latency);
        seconds = std::max(seconds, o.seconds);
    }
};

// Appends decimal `v` to `s` (no allocation beyond the string's reserve).
void append_num(std::string& s, uint64_t v) {
    char tmp[24];
    auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, v);
    s.append(tmp, static_cast<std::size_t>(end - tmp));
}

// One sending thread: its own connected sockets (each with its own source port), one table of
// outstanding requests for all of them. Each batch leaves from the next socket in turn; an answer
// comes back on the socket its request left from.
class Driver {
  public:
    Driver(const std::string& target, bool register_mode, uint32_t aors, std::string domain,
           unsigned thread, double zipf, unsigned sockets, const AuthConfig& auth)
        : register_mode_(register_mode),
          aors_(aors),
          domain_(std::move(domain)),
          thread_(thread),
          auth_(auth),
          digest_(register_mode && !auth.password.empty()),
          picker_(aors, zipf, 42 + thread),
          ring_(std::max(1u, sockets)) {
        if (!sipr::net::parse_endpoint(target, to_))
            throw std::runtime_error("bad address " + target);
        if (digest_) {
            if (!hasher_.ok()) throw std::runtime_error("OpenSSL offers no MD5 or SHA-256 here");
            creds_.resize(aors_);
            retries_.reserve(1024);
        }
        for (std::size_t i = 0; i < ring_.size(); ++i) {
            Socket so;
            so.fd = ::socket(to_.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (so.fd < 0) throw std::runtime_error("cannot open a UDP socket");
            socks_.push_back(so);  // closed by the destructor from here on
            int buf = 8 << 20;
            ::setsockopt(so.fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
            ::setsockopt(so.fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
            const auto* sa = reinterpret_cast<const sockaddr*>(&to_);
            if (::connect(so.fd, sa, sipr::net::sockaddr_len(sa)) != 0)
                throw std::runtime_error("cannot connect a UDP socket to " + target);
            sockaddr_storage local{};
            socklen_t len = sizeof local;
            ::getsockname(so.fd, reinterpret_cast<sockaddr*>(&local), &len);
            socks_.back().local = sipr::net::to_string(reinterpret_cast<sockaddr*>(&local));
        }
        if (socks_.size() > 1) {
            // Several sockets: one epoll_wait finds those with answers waiting (level-triggered,
            // so a socket with more than one batch waiting is found again next turn).
            ep_ = ::epoll_create1(EPOLL_CLOEXEC);
            if (ep_ < 0) throw std::runtime_error("cannot create an epoll instance");
            for (std::size_t i = 0; i < socks_.size(); ++i) {
                epoll_event ev{};
                ev.events = EPOLLIN;
                ev.data.u64 = i;
                if (::epoll_ctl(ep_, EPOLL_CTL_ADD, socks_[i].fd, &ev) != 0)
                    throw std::runtime_error("cannot add a socket to epoll");
            }
        }
        for (auto& b : bufs_) b.reserve(1024);
    }
    ~Driver() {
        for (const Socket& so : socks_) ::close(so.fd);
        if (ep_ >= 0) ::close(ep_);
    }
    Driver(const Driver&) = delete;
    Driver& operator=(const Driver&) = delete;

    // Runs until `end_us` with `window` outstanding (closed loop) or at `rate` (open loop), or
    // until `max_requests` were sent; then waits up to 2 s for the answers still due.
    Result run(int64_t start_us, int64_t end_us, uint32_t window, double rate,
               uint64_t max_requests = 0) {
        Result r;
        constexpr std::size_t cap = 1 << 20;
        std::vector<int64_t> table(cap, -1);  // send time by sequence number modulo cap
        uint64_t next = 0;
        std::size_t outstanding = 0;
        int64_t last_sweep = start_us;
        uint64_t sweep_from = 0;
        std::array<mmsghdr, kBatch> msgs{};
        std::array<iovec, kBatch> iov{};
        std::vector<std::array<char, 4096>> rbufs(kBatch);
        std::vector<epoll_event> ready(socks_.size());
        // Takes one recvmmsg batch from `fd` and matches the answers; returns how many datagrams.
        auto receive = [&](int fd) -> int {
            for (std::size_t i = 0; i < kBatch; ++i) {
                iov[i] = {rbufs[i].data(), rbufs[i].size()};
                msgs[i] = {};
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            int got = ::recvmmsg(fd, msgs.data(), kBatch, 0, nullptr);
            int64_t t = now_us();
            for (int i = 0; i < got; ++i) {
                std::string_view bytes(rbufs[i].data(), msgs[i].msg_len);
                sipr::sip::Message m;
                if (sipr::sip::parse_message(bytes, m) != sipr::sip::ParseStatus::Ok ||
                    m.is_request)
                    continue;
                if (m.status_code < 200) continue;  // a provisional answer is not the answer
                const auto* cid = m.find(sipr::sip::HeaderId::CallId);
                if (cid == nullptr || cid->value.size() < 2 || cid->value[0] != 'b') continue;
                uint64_t seq = 0;
                auto [p, ec] = std::from_chars(cid->value.data() + 1,
                                               cid->value.data() + cid->value.size(), seq);
                if (ec != std::errc{} || seq >= next) continue;
                int64_t& sent_at = table[seq % cap];
                if (sent_at < 0) continue;  // a retransmitted answer, or one already counted lost
                if (digest_ && (m.status_code == 401 || m.status_code == 407) &&
                    answer_challenge(m, seq)) {
                    ++r.challenges;  // the registration goes on: its answer is still due
                    continue;
                }
                r.latency.record(t - sent_at);
                sent_at = -1;
                ++r.by_status[m.status_code];
                ++r.answered;
                --outstanding;
            }
            return got;
        };
        for (;;) {
            int64_t now = now_us();
            bool sending = now < end_us && (max_requests == 0 || next < max_requests);
            if (!sending && outstanding == 0) break;
            if (!sending && now > end_us + kLostAfterUs) break;
            std::size_t want = 0;
            // Challenged REGISTERs go again first, with credentials; they are already counted in
            // `outstanding`, so they go out even when the window is full or sending has stopped.
            const std::size_t again = std::min(retries_.size(), kBatch);
            if (sending) {
                if (rate > 0) {
                    auto due =
                        static_cast<uint64_t>(static_cast<double>(now - start_us) / 1e6 * rate);
                    want = due > next ? std::min<uint64_t>(due - next, kBatch) : 0;
                } else if (outstanding < window) {
                    want = std::min<std::size_t>(window - outstanding, kBatch);
                }
                if (max_requests != 0) want = std::min<uint64_t>(want, max_requests - next);
                want = std::min(want, kBatch - again);
            }
            const Socket& out = socks_[want + again > 0 ? ring_.next() : 0];
            for (std::size_t i = 0; i < again; ++i) {
                const Retry& a = retries_[i];
                build(bufs_[i], a.seq, static_cast<uint32_t>(a.seq % aors_), out.local, a.cseq,
                      a.proxy ? Credentials::Proxy : Credentials::Www);
            }
            for (std::size_t i = 0; i < want; ++i) {
                uint64_t seq = next + i;
                // REGISTERs walk the AORs in order (each once per round); INVITEs use the picker.
                uint32_t aor = register_mode_ ? static_cast<uint32_t>(seq % aors_) : picker_.next();
                Credentials cred = Credentials::None;
                if (digest_ && auth_.reuse && creds_[aor].nonce_len > 0)
                    cred = creds_[aor].proxy ? Credentials::Proxy : Credentials::Www;
                build(bufs_[again + i], seq, aor, out.local, 1, cred);
            }
            const std::size_t batch = again + want;
            for (std::size_t i = 0; i < batch; ++i) {
                iov[i] = {bufs_[i].data(), bufs_[i].size()};
                msgs[i] = {};
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            if (batch > 0) {
                int n = ::sendmmsg(out.fd, msgs.data(), static_cast<unsigned>(batch), 0);
                // A retry that did not leave goes next turn; a request that did not leave was
                // never started (its sequence number is used by the next one).
                const std::size_t left = n > 0 ? static_cast<std::size_t>(n) : 0;
                retries_.erase(retries_.begin(), retries_.begin() + static_cast<std::ptrdiff_t>(
                                                                        std::min(left, again)));
                const std::size_t fresh = left > again ? left - again : 0;
                for (std::size_t i = 0; i < fresh; ++i) table[(next + i) % cap] = now;
                next += fresh;
                outstanding += fresh;
                r.sent += fresh;
            }
            const int wait_ms = (rate > 0 || outstanding >= window || !sending) ? 1 : 0;
            if (socks_.size() == 1) {
                // One socket: try it first and wait only if it had nothing (one syscall per turn
                // under load, as sip-bench has always done).
                if (receive(socks_[0].fd) <= 0) {
                    pollfd p{socks_[0].fd, POLLIN, 0};
                    ::poll(&p, 1, wait_ms);
                }
            } else {
                int n = ::epoll_wait(ep_, ready.data(), static_cast<int>(ready.size()), wait_ms);
                for (int i = 0; i < n; ++i) receive(socks_[ready[i].data.u64].fd);
            }
            int64_t t = now_us();
            if (t - last_sweep > 100'000) {  // every 100 ms: requests older than 2 s are lost
                last_sweep = t;
                while (sweep_from < next) {
                    int64_t& sent_at = table[sweep_from % cap];
                    if (sent_at >= 0 && t - sent_at < kLostAfterUs) break;
                    if (sent_at >= 0) {
                        sent_at = -1;
                        ++r.lost;
                        --outstanding;
                    }
                    ++sweep_from;
                }
            }
        }
        r.seconds = static_cast<double>(std::min(now_us(), end_us) - start_us) / 1e6;
        return r;
    }

  private:
    // Which credentials a REGISTER carries: none, Authorization (for a 401's WWW-Authenticate) or
    // Proxy-Authorization (for a 407's Proxy-Authenticate).
    enum class Credentials : uint8_t { None, Www, Proxy };
    // A challenged REGISTER to send again: the same request (`seq`), CSeq `cseq`.
    struct Retry {
        uint64_t seq;
        uint32_t cseq;
        bool proxy;
    };
    // What an AOR answers its next challenge-free REGISTER with: the last challenge it was given
    // and the nc last sent on its nonce. Fixed-size, so sending never allocates.
    struct AorCredentials {
        std::array<char, 64> realm{}, opaque{};
        std::array<char, 96> nonce{};
        uint8_t realm_len = 0, nonce_len = 0, opaque_len = 0;  // nonce_len 0: none yet
        bool proxy = false;
        DigestAlgorithm algorithm = DigestAlgorithm::Md5;
        std::array<char, sipr::registrar::kMaxDigestHex> ha1{};
        uint32_t nc = 0;
        [[nodiscard]] std::string_view realm_view() const { return {realm.data(), realm_len}; }
        [[nodiscard]] std::string_view nonce_view() const { return {nonce.data(), nonce_len}; }
        [[nodiscard]] std::string_view opaque_view() const { return {opaque.data(), opaque_len}; }
    };

    // A 401/407 to request `seq`: takes its challenge (the first one for --auth-algorithm, or the
    // first one at all), and queues the same REGISTER with the next CSeq. At most two such
    // rounds per request (CSeq 3 is its last). False when the challenge cannot be answered: the
    // 401/407 is then the request's answer.
    bool answer_challenge(const sipr::sip::Message& m, uint64_t seq) {
        const auto* cs = m.find(sipr::sip::HeaderId::CSeq);
        sipr::sip::CSeq cseq;
        if (cs == nullptr || !sipr::sip::parse_cseq(cs->value, cseq) || cseq.number >= 3)
            return false;
        const bool proxy = m.status_code == 407;
        for (std::size_t i = 0; i < m.header_count; ++i) {
            const sipr::sip::Header& h = m.headers[i];
            if (proxy ? !sipr::base::iequals(h.name, "Proxy-Authenticate")
                      : h.id != sipr::sip::HeaderId::WwwAuthenticate)
                continue;
            Challenge c;
            DigestAlgorithm a;
            if (!parse_challenge(h.value, c) || !offers_auth(c.qop) ||
                !sipr::registrar::parse_algorithm(c.algorithm, a) ||
                (auth_.pick && a != auth_.algorithm))
                continue;
            AorCredentials& st = creds_[seq % aors_];
            auto keep = [](std::string_view v, auto& to, uint8_t& len) {
                if (v.size() > to.size()) return false;
                std::memcpy(to.data(), v.data(), v.size());
                len = static_cast<uint8_t>(v.size());
                return true;
            };
            if (!keep(c.realm, st.realm, st.realm_len) ||
                !keep(c.opaque, st.opaque, st.opaque_len) ||
                !keep(c.nonce, st.nonce, st.nonce_len)) {
                st.nonce_len = 0;
                return false;
            }
            st.proxy = proxy;
            st.algorithm = a;
            st.nc = 0;
            user_.assign("bench");
            append_num(user_, seq % aors_);
            const std::string_view a1[] = {user_, st.realm_view(), auth_.password};
            if (hasher_.hex(a, a1, st.ha1.data()) != sipr::registrar::hex_length(a)) {
                st.nonce_len = 0;
                return false;
            }
            retries_.push_back(Retry{seq, cseq.number + 1, proxy});
            return true;
        }
        return false;
    }

    // Appends the credentials of AOR `aor` for request `seq` (its next nc on the AOR's nonce).
    void append_credentials(std::string& s, uint64_t seq, uint32_t aor, uint32_t cseq,
                            Credentials cred) {
        AorCredentials& st = creds_[aor];
        ++st.nc;
        char nc[9];
        std::snprintf(nc, sizeof nc, "%08x", st.nc);
        char cnonce[48];
        const int cn = std::snprintf(cnonce, sizeof cnonce, "%llx.%x.%x.%x",
                                     static_cast<unsigned long long>(seq), thread_, cseq,
                                     static_cast<unsigned>(run_id_));
        user_.assign("bench");
        append_num(user_, aor);
        const std::size_t hl = sipr::registrar::hex_length(st.algorithm);
        const sipr::registrar::DigestInput in{
            std::string_view(st.ha1.data(), hl),
            st.nonce_view(),
            std::string_view(nc, 8),
            std::string_view(cnonce, static_cast<std::size_t>(cn)),
            "auth",
            "REGISTER",
            uri_};
        char response[sipr::registrar::kMaxDigestHex];
        const std::size_t rl =
            sipr::registrar::digest_response(hasher_, st.algorithm, in, response);
        s += cred == Credentials::Proxy ? "Proxy-Authorization" : "Authorization";
        s += ": Digest username=\"";
        s += user_;
        s += "\", realm=\"";
        s += st.realm_view();
        s += "\", nonce=\"";
        s += st.nonce_view();
        s += "\", uri=\"";
        s += uri_;
        s += "\", response=\"";
        s.append(response, rl);
        s += "\", algorithm=";
        s += sipr::registrar::algorithm_name(st.algorithm);
        s += ", cnonce=\"";
        s.append(cnonce, static_cast<std::size_t>(cn));
        s += "\", qop=auth, nc=";
        s.append(nc, 8);
        if (st.opaque_len > 0) {
            s += ", opaque=\"";
            s += st.opaque_view();
            s += '"';
        }
        s += "\r\n";
    }

    // Writes request `seq` for AOR `aor` into `s`, sent from the socket bound to `local`: CSeq
    // `cseq` and credentials `cred` (REGISTERs only).
    void build(std::string& s, uint64_t seq, uint32_t aor, const std::string& local, uint32_t cseq,
               Credentials cred) {
        s.clear();
        auto user = [&] {
            s += "bench";
            append_num(s, aor);
        };
        if (register_mode_) {
            s += "REGISTER sip:";
            s += domain_;
        } else {
            s += "INVITE sip:";
            user();
            s += '@';
            s += domain_;
        }
        s += " SIP/2.0\r\nVia: SIP/2.0/UDP ";
        s += local;
        s += ";branch=z9hG4bK-b";
        append_num(s, seq);
        s += '.';
        append_num(s, thread_);
        if (cseq > 1) {  // a new transaction of the same request
            s += '.';
            append_num(s, cseq);
        }
        s += ";rport\r\nMax-Forwards: 70\r\n";
        if (register_mode_) {
            s += "From: <sip:";
            user();
            s += '@';
            s += domain_;
            s += ">;tag=bt";
        } else {
            s += "From: \"Bench Caller\" <sip:caller@";
            s += domain_;
            s += ">;tag=bt";
        }
        append_num(s, seq);
        s += "\r\nTo: <sip:";
        user();
        s += '@';
        s += domain_;
        // Call-ID "b<seq>.<thread>.<run>": the answer is matched on the digits after 'b'. The
        // run number keeps REGISTERs of a later run from repeating an earlier run's Call-ID and
        // CSeq, which a registrar may take for a stale request (RFC 3261 §10.3 step 7).
        s += ">\r\nCall-ID: b";
        append_num(s, seq);
        s += '.';
        append_num(s, thread_);
        s += '.';
        append_num(s, run_id_);
        if (register_mode_) {
            s += "\r\nCSeq: ";
            append_num(s, cseq);
            s += " REGISTER\r\nContact: <sip:";
            user();
            s += '@';
            s += kContactHost;
            s += ">\r\nExpires: 3600\r\n";
            if (cred != Credentials::None) append_credentials(s, seq, aor, cseq, cred);
        } else {
            s += "\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@";
            s += local;
            s += ">\r\nAllow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\nSupported: timer\r\n";
        }
        s += "User-Agent: sip-bench\r\nContent-Length: 0\r\n\r\n";
    }

    struct Socket {
        int fd = -1;
        std::string local;  // its address, host:port, for Via and Contact
    };

    sockaddr_storage to_{};
    std::vector<Socket> socks_;
    int ep_ = -1;
    bool register_mode_;
    uint32_t aors_;
    std::string domain_;
    unsigned thread_;
    const AuthConfig& auth_;
    const bool digest_;  // REGISTERs that answer challenges (--auth-password)
    sipr::registrar::DigestHasher hasher_;
    std::vector<AorCredentials> creds_;   // by AOR index, with digest_
    std::vector<Retry> retries_;          // challenged REGISTERs waiting to go again
    std::string user_;                    // scratch: "bench<i>"
    std::string uri_ = "sip:" + domain_;  // the Request-URI of a REGISTER, the digest's uri
    // Different in every run (and every Driver of one run): wall-clock nanoseconds at start.
    uint64_t run_id_ =
        static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
    AorPicker picker_;
    SocketRing ring_;
    std::array<std::string, kBatch> bufs_;
};

// Writes every AOR's binding into the Redis of `url_text` as the registrar would have (one
// REGISTER each, applied by register.lua through location::Admin, pipelined), and with
// --auth-password its subscriber record as `sip-locctl user add AOR --password P --realm R` does
// (HA1s of MD5 and SHA-256, no algorithm list of its own). Returns the number written.
uint32_t populate_redis(const std::string& url_text, const Options& o) {
    sipr::location::RedisUrl url;
    std::string err;
    if (!sipr::location::parse_redis_url(url_text, url, err)) throw std::runtime_error(err);
    sipr::location::Admin admin;
    if (std::string why = admin.open(url, false, 5000); !why.empty()) throw std::runtime_error(why);
    constexpr uint32_t kChunk = 1000;
    std::vector<sipr::location::RegisterChanges> batch;
    for (uint32_t first = 0; first < o.aors; first += kChunk) {
        const uint32_t last = std::min(o.aors, first + kChunk);
        batch.clear();
        for (uint32_t i = first; i < last; ++i) {
            const std::string user = "bench" + std::to_string(i);
            sipr::location::Binding b;
            b.cseq = 1;
            b.call_id = "populate-" + std::to_string(i);
            b.contact = "sip:" + user + "@" + std::string(kContactHost);
            b.received = std::string(kContactHost);
            b.user_agent = "sip-bench";
            sipr::sip::NameAddr na;
            if (!sipr::sip::parse_name_addr(b.contact, na))
                throw std::runtime_error("bad contact " + b.contact);
            sipr::location::RegisterChanges ch;
            ch.aor = "sip:" + user + "@" + o.domain;
            ch.call_id = b.call_id;
            ch.cseq = b.cseq;
            ch.contacts.push_back(
                sipr::location::ContactChange{sipr::registrar::contact_key(na.uri, na.uri_text),
                                              3600, sipr::location::pack_binding_tail(b)});
            batch.push_back(std::move(ch));
        }
        if (std::string why = admin.apply_many(batch); !why.empty()) throw std::runtime_error(why);
    }
    if (o.auth.password.empty()) return o.aors;
    const std::string realm = o.auth.realm.empty() ? o.domain : o.auth.realm;
    sipr::registrar::DigestHasher h;
    if (!h.ok()) throw std::runtime_error("OpenSSL offers no MD5 or SHA-256 here");
    char md5[sipr::registrar::kMaxDigestHex], sha[sipr::registrar::kMaxDigestHex];
    for (uint32_t i = 0; i < o.aors; ++i) {
        const std::string user = "bench" + std::to_string(i);
        const std::string_view a1[] = {user, realm, o.auth.password};
        const std::size_t n5 = h.hex(DigestAlgorithm::Md5, a1, md5);
        const std::size_t n256 = h.hex(DigestAlgorithm::Sha256, a1, sha);
        if (n5 == 0 || n256 == 0) throw std::runtime_error("cannot hash a password");
        sipr::location::SubscriberRecord rec{std::string(md5, n5), std::string(sha, n256), realm,
                                             ""};
        if (std::string why = admin.put_subscriber("sip:" + user + "@" + o.domain, rec);
            !why.empty())
            throw std::runtime_error(why);
    }
    return o.aors;
}

// Runs `threads` drivers over the same wall-clock interval, the `sockets` spread over them, and
// merges their results.
Result run_threads(const Options& o, const std::string& target, bool register_mode, double seconds,
                   uint32_t window, double rate, uint64_t max_requests) {
    const unsigned n = std::max(1u, o.threads);
    const unsigned sockets = std::max(n, o.sockets);
    std::vector<std::unique_ptr<Driver>> drivers;
    for (unsigned t = 0; t < n; ++t)
        drivers.push_back(
            std::make_unique<Driver>(target, register_mode, o.aors, o.domain, t, o.zipf,
                                     static_cast<unsigned>(share(sockets, n, t)), o.auth));
    std::vector<Result> results(n);
    std::vector<std::thread> pool;
    const int64_t start = now_us();
    const int64_t end = start + static_cast<int64_t>(seconds * 1e6);
    for (unsigned t = 0; t < n; ++t) {
        // The window and the rate are split over the threads; the first ones take the remainder.
        auto w = static_cast<uint32_t>(share(window, n, t));
        uint64_t m = share(max_requests, n, t);
        pool.emplace_back([&, t, w, m] {
            if (max_requests != 0 && m == 0) return;
            results[t] = drivers[t]->run(start, end, std::max(w, 1u), rate / n, m);
        });
    }
    for (auto& th : pool) th.join();
    Result all;
    for (const Result& r : results) all.merge(r);
    return all;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    bool no_populate = false;
    CLI::App cli{"sip-bench: load generator for SIP redirect servers and registrars", "sip-bench"};
    cli.add_option("--target", o.target,
                   "server under test (a registrar with --register), host:port")
        ->required();
    cli.add_option("--registrar", o.registrar, "registrar to populate through, host:port");
    cli.add_option("--populate", o.populate,
                   "how the AORs get their binding first: registrar (REGISTERs to --registrar), "
                   "redis (written into --redis in our schema), none")
        ->check(CLI::IsMember({"registrar", "redis", "none"}))
        ->capture_default_str();
    cli.add_option("--redis", o.redis, "Redis for --populate redis")->capture_default_str();
    cli.add_flag("--no-populate", no_populate, "same as --populate none");
    cli.add_option("--aors", o.aors, "AORs to register and call")
        ->check(CLI::Range(1u, 10'000'000u))
        ->capture_default_str();
    cli.add_option("--window", o.window, "closed loop: requests outstanding (all threads)")
        ->check(CLI::Range(1u, 100'000u))
        ->capture_default_str();
    cli.add_option("--rate", o.rate, "open loop: requests per second in all (overrides --window)")
        ->check(CLI::NonNegativeNumber);
    cli.add_option("--duration", o.duration, "seconds of load")
        ->check(CLI::Range(0.1, 86400.0))
        ->capture_default_str();
    cli.add_option("--threads", o.threads, "sending threads")
        ->check(CLI::Range(1u, 64u))
        ->capture_default_str();
    cli.add_option("--sockets", o.sockets,
                   "client sockets (source ports) in all, spread over the threads; each batch "
                   "leaves from a thread's next socket in turn (default: one per thread)")
        ->check(CLI::Range(1u, 512u));
    cli.add_option("--zipf", o.zipf, "AOR popularity: Zipf exponent S (0: uniform)")
        ->check(CLI::Range(0.0, 10.0))
        ->capture_default_str();
    cli.add_flag("--register", o.register_mode, "send REGISTERs to --target instead of INVITEs");
    cli.add_option("--pid", o.pids, "a process whose CPU time to measure (repeatable)");
    cli.add_flag("--json", o.json, "print one JSON object instead of text");
    cli.add_option("--domain", o.domain, "domain of the AORs")->capture_default_str();
    cli.add_option("--auth-password", o.auth.password,
                   "digest password of every AOR: a REGISTER challenged with 401/407 is sent "
                   "again with credentials (same Call-ID, next CSeq; at most twice), and the "
                   "challenge round trip counts in that registration's latency and window slot; "
                   "responses/s counts final answers only (200s, with the right password). "
                   "--populate redis also writes the "
                   "subscribers with this password");
    std::string auth_algorithm;
    cli.add_option("--auth-algorithm", auth_algorithm,
                   "answer only the challenge with this algorithm (default: the first offered)")
        ->check(CLI::IsMember({"MD5", "SHA-256"}));
    std::string auth_nonce = "reuse";
    cli.add_option("--auth-nonce", auth_nonce,
                   "reuse: an AOR's later REGISTERs carry credentials on its last nonce with the "
                   "next nc (one challenge per AOR per nonce lifetime); fresh: every REGISTER "
                   "goes without credentials and is challenged")
        ->check(CLI::IsMember({"reuse", "fresh"}))
        ->capture_default_str();
    cli.add_option("--auth-realm", o.auth.realm,
                   "realm of the subscribers --populate redis writes (default: --domain, as "
                   "sip-registrard's default realm is the AOR's domain)");
    CLI11_PARSE(cli, argc, argv);
    // With --register the REGISTERs are the load: nothing is populated unless --populate says so.
    if (no_populate || (o.register_mode && cli.count("--populate") == 0)) o.populate = "none";
    o.auth.reuse = auth_nonce == "reuse";
    if (!auth_algorithm.empty()) {
        o.auth.pick = true;
        (void)sipr::registrar::parse_algorithm(auth_algorithm, o.auth.algorithm);
    }
    if (o.sockets != 0 && o.sockets < o.threads) {
        std::fprintf(
            stderr,
            "sip-bench: --sockets %u is fewer than --threads %u; every thread needs a socket\n",
            o.sockets, o.threads);
        return 2;
    }

    try {
        if (o.populate == "registrar" && !o.registrar.empty()) {
            // Every AOR once (REGISTER sequence numbers walk the AORs in order), 200 at a time.
            Options p = o;
            p.threads = 1;
            p.sockets = 1;
            Result r = run_threads(p, o.registrar, true, 300, 200, 0, o.aors);
            uint64_t ok = r.by_status.count(200) != 0 ? r.by_status[200] : 0;
            std::fprintf(
                stderr,
                "sip-bench: populated through %s: %llu REGISTERs, %llu answered 200, %llu lost\n",
                o.registrar.c_str(), static_cast<unsigned long long>(r.sent),
                static_cast<unsigned long long>(ok), static_cast<unsigned long long>(r.lost));
            if (ok != o.aors) {
                std::fprintf(stderr,
                             "sip-bench: not every AOR registered; is %s a registrar for %s?\n",
                             o.registrar.c_str(), o.domain.c_str());
                return 1;
            }
        } else if (o.populate == "redis") {
            uint32_t n = populate_redis(o.redis, o);
            std::fprintf(stderr, "sip-bench: wrote %u bindings into Redis\n", n);
        }
        std::vector<double> cpu0;
        for (int pid : o.pids) {
            double c = cpu_seconds(pid);
            if (c < 0) throw std::runtime_error("no process " + std::to_string(pid) + " (--pid)");
            cpu0.push_back(c);
        }
        const double self0 = self_cpu_seconds();
        Result r = run_threads(o, o.target, o.register_mode, o.duration, o.window, o.rate, 0);
        const double self_cpu = self_cpu_seconds() - self0;
        double cpu = 0;
        for (std::size_t i = 0; i < o.pids.size(); ++i)
            cpu += std::max(0.0, cpu_seconds(o.pids[i]) - cpu0[i]);
        const double rps = r.seconds > 0 ? static_cast<double>(r.answered) / r.seconds : 0;
        const double cpu_us = r.answered != 0 ? cpu * 1e6 / static_cast<double>(r.answered) : 0;
        const Histogram& h = r.latency;
        const char* auth_mode = !o.register_mode || o.auth.password.empty() ? "none"
                                : o.auth.reuse                              ? "digest-reuse"
                                                                            : "digest-fresh";
        if (o.json) {
            std::printf(
                "{\"mode\":\"%s\",\"threads\":%u,\"sockets\":%u,\"window\":%u,\"rate\":%.0f,"
                "\"zipf\":%.2f,"
                "\"aors\":%u,\"sent\":%llu,\"answered\":%llu,\"lost\":%llu,\"seconds\":%.3f,"
                "\"responses_per_s\":%.0f,\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,"
                "\"p999_us\":%llu,\"max_us\":%llu,\"mean_us\":%.1f,\"server_cpu_s\":%.3f,"
                "\"server_cpu_us_per_response\":%.2f,\"client_cpu_s\":%.3f,\"auth\":\"%s\","
                "\"challenges\":%llu,\"status\":{",
                o.register_mode ? "register" : "invite", o.threads, std::max(o.threads, o.sockets),
                o.window, o.rate, o.zipf, o.aors, static_cast<unsigned long long>(r.sent),
                static_cast<unsigned long long>(r.answered),
                static_cast<unsigned long long>(r.lost), r.seconds, rps,
                static_cast<unsigned long long>(h.percentile(50)),
                static_cast<unsigned long long>(h.percentile(90)),
                static_cast<unsigned long long>(h.percentile(99)),
                static_cast<unsigned long long>(h.percentile(99.9)),
                static_cast<unsigned long long>(h.max()), h.mean(), cpu, cpu_us, self_cpu,
                auth_mode, static_cast<unsigned long long>(r.challenges));
            bool first = true;
            for (const auto& [code, n] : r.by_status) {
                std::printf("%s\"%d\":%llu", first ? "" : ",", code,
                            static_cast<unsigned long long>(n));
                first = false;
            }
            std::printf("}}\n");
        } else {
            std::printf(
                "%s from %u sockets: sent %llu, answered %llu, lost %llu in %.2f s: %.0f "
                "responses/s\n",
                o.register_mode ? "REGISTER" : "INVITE", std::max(o.threads, o.sockets),
                static_cast<unsigned long long>(r.sent),
                static_cast<unsigned long long>(r.answered),
                static_cast<unsigned long long>(r.lost), r.seconds, rps);
            for (const auto& [code, n] : r.by_status)
                std::printf("  %d: %llu\n", code, static_cast<unsigned long long>(n));
            if (std::strcmp(auth_mode, "none") != 0)
                std::printf("auth %s: %llu challenges answered with credentials\n", auth_mode,
                            static_cast<unsigned long long>(r.challenges));
            std::printf("latency us: p50 %llu  p90 %llu  p99 %llu  p99.9 %llu  max %llu\n",
                        static_cast<unsigned long long>(h.percentile(50)),
                        static_cast<unsigned long long>(h.percentile(90)),
                        static_cast<unsigned long long>(h.percentile(99)),
                        static_cast<unsigned long long>(h.percentile(99.9)),
                        static_cast<unsigned long long>(h.max()));
            if (!o.pids.empty())
                std::printf("server CPU: %.3f s, %.2f us per response\n", cpu, cpu_us);
            std::printf("client CPU: %.3f s\n", self_cpu);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sip-bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
