#pragma once
// A TCP listener and its connections on one worker's uv_loop (RFC 3261 §18: a server that listens
// on UDP listens on TCP too). Every worker opens its own listener on the shared port with
// SO_REUSEPORT, so the kernel spreads connections over the workers and each connection lives on
// one loop from accept to close. Knows nothing of SIP: a StreamHandler owns what is read (its own
// buffer per connection) and says when a message head is incomplete; the server enforces the
// limits a hostile client must not exhaust (connections per worker and per source address, an
// idle timeout, a deadline for a message head, a bounded write buffer).
#include <sys/socket.h>
#include <uv.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "sipr/net/address_set.h"
#include "sipr/net/stats.h"

namespace sipr::net {

struct StreamLimits {
    std::size_t max_connections = 1024;  // open at once on this listener; beyond: refused
    std::size_t max_per_source = 64;     // open at once from one source address; beyond: refused
    uint64_t idle_ms = 300000;           // nothing read or written this long: closed
    uint64_t head_ms = 5000;             // a message head incomplete this long: closed
    std::size_t max_write_buffer = 256 * 1024;  // unsent answer bytes; beyond: closed
};

// What a StreamServer reports about its connections. Called on the server's loop thread only.
class StreamHandler {
  public:
    virtual ~StreamHandler() = default;
    // A connection was accepted from `peer` (valid during the call).
    virtual void on_open(ConnectionId id, const sockaddr* peer) noexcept = 0;
    // Where the next bytes of `id` may be read to. Empty: the connection is closed (Protocol).
    virtual std::span<char> read_space(ConnectionId id) noexcept = 0;
    // `n` bytes were read into read_space(id). Returns true while a message head is incomplete
    // (the head deadline runs from the first such read). It may write, pause or close `id`.
    virtual bool on_read(ConnectionId id, std::size_t n) noexcept = 0;
    // `id` is closed (whoever closed it); nothing more is reported about it, and writes to it fail.
    virtual void on_closed(ConnectionId id, StreamClose why) noexcept = 0;
};

class StreamServer {
  public:
    StreamServer(StreamLimits limits, StreamStats& stats) noexcept;
    ~StreamServer();
    StreamServer(const StreamServer&) = delete;
    StreamServer& operator=(const StreamServer&) = delete;

    // Creates, binds (SO_REUSEPORT, and IPV6_V6ONLY for IPv6) and listens on `addr` on `loop`.
    // Returns 0 or a negative errno / uv error code; on error nothing stays open.
    [[nodiscard]] int open(uv_loop_t* loop, const sockaddr* addr) noexcept;
    // Starts accepting; `handler` (not owned) must outlive the server's connections. `allow`
    // non-empty: only sources in it are accepted (the rest refused, Denied); it is copied.
    [[nodiscard]] int start(StreamHandler* handler, const AddressSet& allow) noexcept;
    // Stops accepting new connections; those open go on.
    void stop_accepting() noexcept;

    // Queues `bytes` on `id` in order (copied; sent as the socket takes them). Returns false when
    // `id` is not open, or when the unsent bytes would exceed max_write_buffer (the connection is
    // then closed, Backlog) or the socket failed (closed, Error).
    bool write(ConnectionId id, std::string_view bytes) noexcept;
    // Stops reading `id` (its handler is busy with a message) / starts again.
    void pause(ConnectionId id) noexcept;
    void resume(ConnectionId id) noexcept;
    // Closes `id` now (unsent bytes are lost) / once every byte written so far is sent, reading
    // nothing more meanwhile. Counted under `why`.
    void close(ConnectionId id, StreamClose why) noexcept;
    void close_after_write(ConnectionId id, StreamClose why) noexcept;

    // Closes the listener and every connection (Shutdown); the loop runs the close callbacks.
    void close() noexcept;

    // The bound address (port filled in when bound to port 0).
    [[nodiscard]] sockaddr_storage local_address() const noexcept;
    [[nodiscard]] std::size_t open_connections() const noexcept;

    struct State;  // the handles and connections (opaque; public for the .cpp's callbacks)

  private:
    State* state_ = nullptr;  // freed once every handle's close callback ran
    StreamLimits limits_;
    StreamStats& stats_;
};

}  // namespace sipr::net
