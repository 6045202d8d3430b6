#pragma once
// The first checks every service makes on a datagram, in the order of DESIGN §4: size (513),
// framing and Via (drop, nowhere to answer), mandatory headers (400 naming the fault).
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "sipr/base/stats.h"
#include "sipr/sip/message.h"
#include "sipr/sip/request.h"
#include "sipr/sip/response.h"

namespace sipr::sip {

// The transport a request came over (RFC 3261 §18).
enum class Transport : uint8_t { Udp, Tcp };

// Where a request came from, in the forms the services need.
struct Peer {
    sockaddr_storage addr{};
    char ip[46] = {};  // numeric, no brackets
    uint8_t ip_len = 0;
    uint16_t port = 0;
    Transport transport = Transport::Udp;
    // Over a stream: the connection it came on, which its answer goes back on (§18.2.2); named
    // by the app (a net::ConnectionId). 0 over UDP.
    uint64_t connection = 0;
    [[nodiscard]] Source source() const noexcept {
        return Source{std::string_view(ip, ip_len), port};
    }
};

// Sends a response. Implemented by the app over a net::UdpSocket; services never see sockets.
class Sender {
  public:
    virtual ~Sender() = default;
    // Sends `bytes` to `to`'s address at `port` (RFC 3261 §18.2.2), or over a stream back on
    // `to.connection` (`port` unused). Returns false when the socket refused it, or the
    // connection is gone (counted by the caller).
    virtual bool send(std::string_view bytes, const Peer& to, uint16_t port) noexcept = 0;
    // Where the next response may be written in place, so that send() need not copy it; empty
    // when the sender has no such buffer. Valid until the next send().
    [[nodiscard]] virtual std::span<char> send_buffer() noexcept { return {}; }
};

// Where a service writes a response of at most `limit` bytes (cut to `fallback`'s size): the
// first `limit` bytes of `sender`'s in-place buffer when it holds that many (send() then need not
// copy), else of `fallback`, the service's own buffer. Valid until the next send().
[[nodiscard]] std::span<char> response_buffer(Sender& sender, std::span<char> fallback,
                                              std::size_t limit) noexcept;

// Whether a service configured with `domains` (lower-case; empty serves every domain) serves
// `host`, compared case-insensitively (RFC 3261 §19.1.4).
[[nodiscard]] bool serves_domain(std::span<const std::string> domains,
                                 std::string_view host) noexcept;

// RFC 3261 §18.2.2 / RFC 3581 §4 for a request received over UDP: with rport, the source port;
// else the sent-by port, else 5060. (The address is always the source: received= is added.)
[[nodiscard]] constexpr uint16_t response_port(const Via& via, uint16_t source_port) noexcept {
    if (via.has_rport) return source_port;
    return via.has_port ? via.port : 5060;
}

enum class IntakeAction : uint8_t {
    Proceed,  // a well-formed request: `core` is filled
    Respond,  // answer with `status` / `reason` (513 or 400) and stop
    Drop,     // nothing can be answered: count `drop` and stop
};

struct IntakeResult {
    IntakeAction action = IntakeAction::Drop;
    uint16_t status = 0;
    std::string_view reason;
    base::DropReason drop = base::DropReason::NotSip;
};

// Parses `bytes` into `msg` / `core` and classifies it. `max_message` is the size beyond which a
// request is answered 513 (RFC 3261 §18.1.1 spirit); `max_headers` the header cap.
[[nodiscard]] IntakeResult intake(std::string_view bytes, std::size_t max_message,
                                  std::size_t max_headers, Message& msg,
                                  RequestCore& core) noexcept;

}  // namespace sipr::sip
