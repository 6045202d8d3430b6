// Parse throughput on one core: a realistic ~800-byte INVITE (12 header lines, a small SDP body)
// through parse_message + parse_request_core + normalize_aor of the Request-URI, as sip-redirectd
// does before its look-up. Five timed runs; prints each run's rate and the median.
//
//   parse_bench [--seconds X] [--runs N]
//
// A checksum of the results is printed so the compiler cannot drop the work.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/sip/aor.h"
#include "sipr/sip/message.h"
#include "sipr/sip/request.h"

namespace {

using namespace sipr::sip;
using Clock = std::chrono::steady_clock;

// What a carrier SBC typically sends: RFC 3261 §24.2 (F1) with a fuller header set.
std::string make_invite() {
    const std::string sdp =
        "v=0\r\n"
        "o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n"
        "s=-\r\n"
        "c=IN IP4 192.0.2.101\r\n"
        "t=0 0\r\n"
        "m=audio 49172 RTP/AVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=sendrecv\r\n";
    std::string m =
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        "CSeq: 314159 INVITE\r\n"
        "Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>\r\n"
        "Content-Type: application/sdp\r\n"
        "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
        "Supported: replaces, timer, 100rel\r\n"
        "User-Agent: ExamplePhone/4.2.1 (build 20231124)\r\n"
        "Content-Length: ";
    m += std::to_string(sdp.size());
    m += "\r\n\r\n";
    m += sdp;
    return m;
}

struct Work {
    Message msg;  // reused across iterations, as a worker's request slot is
    std::array<char, kMaxAorLength> aor{};
};

// One message through the receive path. Returns a value depending on every result.
inline uint64_t process(std::string_view bytes, Work& w) noexcept {
    const ParseStatus ps = parse_message(bytes, w.msg);
    RequestCore core;
    const Fault fault = parse_request_core(w.msg, ps, core);
    std::size_t len = 0;
    const AorStatus as = normalize_aor(core.request_uri, "example.com", w.aor, len);
    return static_cast<uint64_t>(ps) + w.msg.header_count + static_cast<uint64_t>(fault) +
           core.cseq.number + core.call_id.size() + static_cast<uint64_t>(as) + len +
           static_cast<unsigned char>(w.aor[len > 0 ? len - 1 : 0]);
}

[[noreturn]] void usage(const char* argv0) {
    std::fprintf(stderr, "usage: %s [--seconds X] [--runs N]\n", argv0);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = 1.0;
    int runs = 5;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") usage(argv[0]);
        if (i + 1 >= argc) usage(argv[0]);
        char* end = nullptr;
        if (arg == "--seconds") {
            seconds = std::strtod(argv[++i], &end);
            if (*end != '\0' || !(seconds > 0 && seconds <= 3600)) usage(argv[0]);
        } else if (arg == "--runs") {
            const long n = std::strtol(argv[++i], &end, 10);
            if (*end != '\0' || n < 1 || n > 100) usage(argv[0]);
            runs = static_cast<int>(n);
        } else {
            usage(argv[0]);
        }
    }

    const std::string invite = make_invite();
    auto work = std::make_unique<Work>();

    // A benchmark of the error path would be meaningless: check the message is what we think.
    {
        const ParseStatus ps = parse_message(invite, work->msg);
        RequestCore core;
        const Fault fault = parse_request_core(work->msg, ps, core);
        std::size_t len = 0;
        const AorStatus as = normalize_aor(core.request_uri, "example.com", work->aor, len);
        if (ps != ParseStatus::Ok || fault != Fault::None || as != AorStatus::Ok) {
            std::fprintf(stderr,
                         "parse_bench: the sample INVITE does not parse (parse %s, fault %d, "
                         "aor %d)\n",
                         std::string(parse_status_text(ps)).c_str(), static_cast<int>(fault),
                         static_cast<int>(as));
            return 1;
        }
        std::printf("parse_bench: %zu-byte INVITE, %zu header entries, AOR %.*s\n", invite.size(),
                    work->msg.header_count, static_cast<int>(len), work->aor.data());
    }

    // Each run works through batches and looks at the clock between them, so the clock costs
    // nothing per message.
    constexpr int kBatch = 256;
    const auto run_length = std::chrono::duration<double>(seconds);
    uint64_t checksum = 0;
    std::vector<double> rates;
    for (int r = 0; r < runs; ++r) {
        uint64_t messages = 0;
        const auto start = Clock::now();
        Clock::time_point now;
        do {
            for (int k = 0; k < kBatch; ++k) checksum += process(invite, *work);
            messages += kBatch;
            now = Clock::now();
        } while (now - start < run_length);
        const double rate =
            static_cast<double>(messages) / std::chrono::duration<double>(now - start).count();
        rates.push_back(rate);
        std::printf("parse_bench: run %d: %.0f msg/s (%.0f ns/msg)\n", r + 1, rate, 1e9 / rate);
    }

    std::vector<double> sorted = rates;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted.size() % 2 == 1
                              ? sorted[sorted.size() / 2]
                              : (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]) / 2;
    std::printf("parse_bench: checksum %llu\n", static_cast<unsigned long long>(checksum));
    std::printf("parse_bench: median %.0f msg/s (%d runs)\n", median, runs);
    return 0;
}
