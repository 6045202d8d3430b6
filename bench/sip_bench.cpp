// sip-bench: drives a sip-redirect deployment and reports throughput and latency (DESIGN §8).
//
//   sip-bench --target 127.0.0.1:5070 --registrar 127.0.0.1:5060 --aors 10000 --window 64
//             --duration 10 [--register] [--rate R] [--pid PID]... [--json]
//
// Populates N AORs through the registrar (sip:bench<i>@bench.example -> sip:bench<i>@127.0.0.1:
// 5999), then sends INVITEs (or, with --register, REGISTERs) closed-loop with --window requests
// outstanding, or open-loop at --rate per second. Every response is matched to its request by
// Call-ID; a request unanswered for 2 s counts as lost. CPU seconds of --pid processes (from
// /proc/PID/stat) are measured over the run.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "sipr/net/endpoint.h"
#include "sipr/sip/message.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kBatch = 32;
constexpr int64_t kLostAfterUs = 2'000'000;

int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
        .count();
}

double cpu_seconds(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto close = s.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream in(s.substr(close + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) utime = std::stod(field);
        if (i == 15) stime = std::stod(field);
    }
    return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Options {
    std::string target, registrar;
    uint32_t aors = 1000;
    uint32_t window = 64;
    double rate = 0;
    double duration = 10;
    bool register_mode = false;
    bool json = false;
    bool populate = true;
    std::vector<int> pids;
    std::string domain = "bench.example";
};

struct Outstanding {
    int64_t sent_us = -1;
};

struct Result {
    uint64_t sent = 0, lost = 0;
    std::map<int, uint64_t> by_status;
    std::vector<int64_t> latencies_us;
    double seconds = 0;
};

class Driver {
public:
    Driver(const std::string& target, bool register_mode, uint32_t aors, std::string domain)
        : register_mode_(register_mode), aors_(aors), domain_(std::move(domain)) {
        if (!sipr::net::parse_endpoint(target, to_)) throw std::runtime_error("bad --target " + target);
        fd_ = ::socket(to_.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int buf = 8 << 20;
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
        const auto* sa = reinterpret_cast<const sockaddr*>(&to_);
        if (::connect(fd_, sa, sipr::net::sockaddr_len(sa)) != 0)
            throw std::runtime_error("cannot connect UDP socket to " + target);
        sockaddr_storage local{};
        socklen_t len = sizeof local;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &len);
        local_ = sipr::net::to_string(reinterpret_cast<sockaddr*>(&local));
    }
    ~Driver() { ::close(fd_); }

    // Runs for `seconds` with `window` outstanding (closed loop) or at `rate` (open loop).
    Result run(double seconds, uint32_t window, double rate, uint64_t max_requests = 0) {
        Result r;
        const std::size_t cap = 1 << 20;
        std::vector<Outstanding> table(cap);
        uint64_t next = 0, answered = 0;
        std::size_t outstanding = 0;
        int64_t start = now_us(), end = start + static_cast<int64_t>(seconds * 1e6);
        int64_t last_sweep = start;
        uint64_t sweep_from = 0;
        std::mt19937 rng(42);
        std::vector<std::string> bufs(kBatch);
        std::vector<mmsghdr> msgs(kBatch);
        std::vector<iovec> iov(kBatch);
        std::vector<std::array<char, 4096>> rbufs(kBatch);
        r.latencies_us.reserve(1 << 20);
        for (;;) {
            int64_t now = now_us();
            bool sending = now < end && (max_requests == 0 || next < max_requests);
            if (!sending && outstanding == 0) break;
            if (!sending && now > end + kLostAfterUs) break;
            // Send what the window or the rate allows.
            std::size_t want = 0;
            if (sending) {
                if (rate > 0) {
                    auto due = static_cast<uint64_t>((static_cast<double>(now - start) / 1e6) * rate);
                    want = due > next ? std::min<uint64_t>(due - next, kBatch) : 0;
                } else if (outstanding < window) {
                    want = std::min<std::size_t>(window - outstanding, kBatch);
                }
                if (max_requests != 0) want = std::min<uint64_t>(want, max_requests - next);
            }
            for (std::size_t i = 0; i < want; ++i) {
                uint64_t seq = next + i;
                // REGISTERs walk the AORs in order (each registered once per round), INVITEs pick at random.
                auto aor = static_cast<uint32_t>(register_mode_ ? seq % aors_ : rng() % aors_);
                bufs[i] = build(seq, aor);
                iov[i] = {bufs[i].data(), bufs[i].size()};
                msgs[i] = {};
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            if (want > 0) {
                int n = ::sendmmsg(fd_, msgs.data(), static_cast<unsigned>(want), 0);
                if (n > 0) {
                    for (int i = 0; i < n; ++i) table[(next + static_cast<uint64_t>(i)) % cap].sent_us = now;
                    next += static_cast<uint64_t>(n);
                    outstanding += static_cast<std::size_t>(n);
                    r.sent += static_cast<uint64_t>(n);
                }
            }
            // Receive a batch.
            for (std::size_t i = 0; i < kBatch; ++i) {
                iov[i] = {rbufs[i].data(), rbufs[i].size()};
                msgs[i] = {};
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            int got = ::recvmmsg(fd_, msgs.data(), kBatch, 0, nullptr);
            if (got <= 0) {
                pollfd p{fd_, POLLIN, 0};
                ::poll(&p, 1, (rate > 0 || outstanding >= window || !sending) ? 1 : 0);
            }
            int64_t t = now_us();
            for (int i = 0; i < got; ++i) {
                std::string_view bytes(rbufs[i].data(), msgs[i].msg_len);
                sipr::sip::Message m;
                if (sipr::sip::parse_message(bytes, m) != sipr::sip::ParseStatus::Ok || m.is_request) continue;
                const auto* cid = m.find(sipr::sip::HeaderId::CallId);
                if (cid == nullptr || cid->value.size() < 2 || cid->value[0] != 'b') continue;
                uint64_t seq = std::strtoull(std::string(cid->value.substr(1)).c_str(), nullptr, 10);
                Outstanding& o = table[seq % cap];
                if (o.sent_us < 0 || seq >= next) continue;
                r.latencies_us.push_back(t - o.sent_us);
                o.sent_us = -1;
                ++r.by_status[m.status_code];
                ++answered;
                --outstanding;
            }
            // Every 100 ms: requests older than 2 s are lost.
            if (t - last_sweep > 100'000) {
                last_sweep = t;
                while (sweep_from < next) {
                    Outstanding& o = table[sweep_from % cap];
                    if (o.sent_us >= 0 && t - o.sent_us < kLostAfterUs) break;
                    if (o.sent_us >= 0) {
                        o.sent_us = -1;
                        ++r.lost;
                        --outstanding;
                    }
                    ++sweep_from;
                }
            }
        }
        r.seconds = static_cast<double>(std::min(now_us(), end) - start) / 1e6;
        return r;
    }

private:
    std::string build(uint64_t seq, uint32_t aor) const {
        std::string user = "bench" + std::to_string(aor);
        std::string s;
        s.reserve(700);
        if (register_mode_) {
            s += "REGISTER sip:" + domain_ + " SIP/2.0\r\n";
        } else {
            s += "INVITE sip:" + user + "@" + domain_ + " SIP/2.0\r\n";
        }
        s += "Via: SIP/2.0/UDP " + local_ + ";branch=z9hG4bK-b" + std::to_string(seq) + ";rport\r\n";
        s += "Max-Forwards: 70\r\n";
        if (register_mode_) {
            s += "From: <sip:" + user + "@" + domain_ + ">;tag=bt" + std::to_string(seq) + "\r\n";
            s += "To: <sip:" + user + "@" + domain_ + ">\r\n";
        } else {
            s += "From: \"Bench Caller\" <sip:caller@" + domain_ + ">;tag=bt" + std::to_string(seq) + "\r\n";
            s += "To: <sip:" + user + "@" + domain_ + ">\r\n";
        }
        s += "Call-ID: b" + std::to_string(seq) + "\r\n";
        s += std::string("CSeq: 1 ") + (register_mode_ ? "REGISTER" : "INVITE") + "\r\n";
        if (register_mode_) {
            s += "Contact: <sip:" + user + "@127.0.0.1:5999>\r\nExpires: 3600\r\n";
        } else {
            s += "Contact: <sip:caller@" + local_ + ">\r\n";
            s += "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\nSupported: timer\r\n";
        }
        s += "User-Agent: sip-bench\r\nContent-Length: 0\r\n\r\n";
        return s;
    }

    sockaddr_storage to_{};
    int fd_ = -1;
    std::string local_;
    bool register_mode_;
    uint32_t aors_;
    std::string domain_;
};

double percentile(std::vector<int64_t>& v, double p) {
    if (v.empty()) return 0;
    std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size()))) - (p > 0 ? 1 : 0));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
    return static_cast<double>(v[i]);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App cli{"sip-bench: load generator for sip-redirect", "sip-bench"};
    cli.add_option("--target", o.target, "redirect server (or registrar with --register), host:port")->required();
    cli.add_option("--registrar", o.registrar, "registrar to populate through, host:port");
    cli.add_option("--aors", o.aors, "AORs to register and call")->capture_default_str();
    cli.add_option("--window", o.window, "closed loop: requests outstanding")->capture_default_str();
    cli.add_option("--rate", o.rate, "open loop: requests per second (overrides --window)");
    cli.add_option("--duration", o.duration, "seconds")->capture_default_str();
    cli.add_flag("--register", o.register_mode, "send REGISTERs to --target instead of INVITEs");
    cli.add_flag("--no-populate", [&](int64_t) { o.populate = false; }, "skip registering the AORs");
    cli.add_option("--pid", o.pids, "processes whose CPU time to measure (repeatable)");
    cli.add_flag("--json", o.json, "print JSON");
    cli.add_option("--domain", o.domain, "domain of the AORs")->capture_default_str();
    CLI11_PARSE(cli, argc, argv);

    try {
        if (!o.register_mode && o.populate && !o.registrar.empty()) {
            Driver reg(o.registrar, true, o.aors, o.domain);
            // Register every AOR once (REGISTER sequence numbers walk the AORs in order).
            Result p = reg.run(120, 200, 0, o.aors);
            uint64_t ok = p.by_status.count(200) ? p.by_status[200] : 0;
            std::fprintf(stderr, "sip-bench: populated through %s: %llu REGISTERs, %llu answered 200, %llu lost\n",
                         o.registrar.c_str(), static_cast<unsigned long long>(p.sent),
                         static_cast<unsigned long long>(ok), static_cast<unsigned long long>(p.lost));
        }
        std::vector<double> cpu0;
        for (int pid : o.pids) cpu0.push_back(cpu_seconds(pid));
        Driver d(o.target, o.register_mode, o.aors, o.domain);
        Result r = d.run(o.duration, o.window, o.rate);
        double cpu = 0;
        for (std::size_t i = 0; i < o.pids.size(); ++i) cpu += cpu_seconds(o.pids[i]) - cpu0[i];
        uint64_t answered = 0;
        for (auto& [code, n] : r.by_status) answered += n;
        double rps = static_cast<double>(answered) / r.seconds;
        double p50 = percentile(r.latencies_us, 50), p90 = percentile(r.latencies_us, 90),
               p99 = percentile(r.latencies_us, 99), p999 = percentile(r.latencies_us, 99.9);
        if (o.json) {
            std::printf("{\"mode\":\"%s\",\"sent\":%llu,\"answered\":%llu,\"lost\":%llu,\"seconds\":%.3f,"
                        "\"responses_per_s\":%.0f,\"p50_us\":%.0f,\"p90_us\":%.0f,\"p99_us\":%.0f,"
                        "\"p999_us\":%.0f,\"server_cpu_s\":%.3f,\"status\":{",
                        o.register_mode ? "register" : "invite", static_cast<unsigned long long>(r.sent),
                        static_cast<unsigned long long>(answered), static_cast<unsigned long long>(r.lost),
                        r.seconds, rps, p50, p90, p99, p999, cpu);
            bool first = true;
            for (auto& [code, n] : r.by_status) {
                std::printf("%s\"%d\":%llu", first ? "" : ",", code, static_cast<unsigned long long>(n));
                first = false;
            }
            std::printf("}}\n");
        } else {
            std::printf("%s: sent %llu, answered %llu, lost %llu in %.2f s: %.0f responses/s\n",
                        o.register_mode ? "REGISTER" : "INVITE", static_cast<unsigned long long>(r.sent),
                        static_cast<unsigned long long>(answered), static_cast<unsigned long long>(r.lost),
                        r.seconds, rps);
            for (auto& [code, n] : r.by_status) std::printf("  %d: %llu\n", code, static_cast<unsigned long long>(n));
            std::printf("latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f\n", p50, p90, p99, p999);
            if (!o.pids.empty())
                std::printf("server CPU: %.3f s, %.1f us per response\n", cpu,
                            answered ? cpu * 1e6 / static_cast<double>(answered) : 0.0);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sip-bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
