#pragma once
// A worker's TCP side (issue 17): its net::StreamServer on the worker's loop, one
// sip::StreamFramer per connection, and the hand-over of each framed message to the daemon's
// Service. Answers go back on the connection the request came on (RFC 3261 §18.2.2), in the order
// of the requests: a connection hands over its next message only once the previous one is
// answered (or needs no answer).
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "sipr/net/address_set.h"
#include "sipr/net/stream_server.h"
#include "sipr/sip/intake.h"
#include "sipr/sip/stream_framer.h"

namespace sipr::app {

class Service;

struct StreamOptions {
    bool enabled = false;
    net::StreamLimits limits;        // per worker
    std::size_t max_message = 8192;  // the framer's buffer: larger messages get 513 and a close
};

class StreamFront final : public net::StreamHandler {
  public:
    // `service` (not owned) answers; it is set by the worker before any connection opens.
    StreamFront(const StreamOptions& options, net::StreamStats& stats);
    ~StreamFront() override;

    // Opens the listener on `addr` and starts accepting (sources outside a non-empty `allow`
    // are refused). Returns 0 or a uv error.
    [[nodiscard]] int open(uv_loop_t* loop, const sockaddr* addr, const net::AddressSet& allow,
                           Service* service) noexcept;
    // Sends one answer back on `to.connection`; when that connection waited for it, its next
    // message is handed over. Returns false when the connection is gone or refused the bytes.
    bool send(std::string_view bytes, const sip::Peer& to) noexcept;
    void stop_accepting() noexcept { server_.stop_accepting(); }
    // Closes every connection and the listener; the loop runs the close callbacks.
    void close() noexcept;

    void on_open(net::ConnectionId id, const sockaddr* peer) noexcept override;
    std::span<char> read_space(net::ConnectionId id) noexcept override;
    bool on_read(net::ConnectionId id, std::size_t n) noexcept override;
    void on_closed(net::ConnectionId id, net::StreamClose why) noexcept override;

  private:
    struct Session;
    Session* session(net::ConnectionId id) noexcept;
    // Hands over framed messages until the buffer holds no whole one or an answer is awaited.
    void pump(Session& s) noexcept;
    // Pumps the connections whose awaited answer was sent, from the loop's idle phase rather than
    // inside send(): send() runs inside a service's store callback, which must not be re-entered.
    static void on_kick(uv_idle_t* idle) noexcept;

    StreamOptions options_;
    net::StreamServer server_;
    Service* service_ = nullptr;
    // Indexed by a connection's slot; kept (buffer and all) for the slot's next connection, so a
    // busy worker stops allocating once it has seen its peak of connections.
    std::vector<std::unique_ptr<Session>> sessions_;
    uv_idle_t kick_{};
    bool kick_open_ = false;
    std::vector<net::ConnectionId> ready_;  // answered; to be pumped by on_kick
    std::vector<net::ConnectionId> pumping_;
};

}  // namespace sipr::app
