#pragma once
// One UDP socket on one worker's uv_loop. Every worker of a daemon opens its own on the same port
// with SO_REUSEPORT (libuv 1.44 has no UV_UDP_REUSEPORT: the socket is made here, the option set,
// bound, then handed to uv_udp_open), and receives in batches with recvmmsg (UV_UDP_RECVMMSG).
#include <sys/socket.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace sipr::net {

// Receives datagrams. Called on the socket's loop thread only.
class DatagramHandler {
  public:
    virtual ~DatagramHandler() = default;
    // `bytes` and `from` are valid only during the call (they live in libuv's receive buffer).
    virtual void on_datagram(std::string_view bytes, const sockaddr* from) noexcept = 0;
    // `count` queued datagrams could not be sent when the queue was flushed (socket buffer full).
    virtual void on_send_failed(std::size_t count) noexcept { (void)count; }
};

class UdpSocket {
  public:
    UdpSocket() noexcept;
    ~UdpSocket();
    UdpSocket(const UdpSocket&) = delete;
    UdpSocket& operator=(const UdpSocket&) = delete;

    // Creates, binds (SO_REUSEPORT, and IPV6_V6ONLY for IPv6) and opens the socket on `loop`.
    // Returns 0 or a negative errno / uv error code; on error nothing stays open.
    [[nodiscard]] int open(uv_loop_t* loop, const sockaddr* addr) noexcept;

    // Spreads the datagrams of this socket's SO_REUSEPORT group at random over the first
    // `group_size` sockets of the group (in bind order), so one source address and port, such as
    // a load balancer's, reaches every worker instead of the one its flow hashes to. Attaches a
    // classic BPF program (SO_ATTACH_REUSEPORT_CBPF) that returns a random index modulo
    // `group_size`; it serves the whole group, and each member may attach it again (the last
    // attach wins, the programs are the same). An index past the group's current size (while
    // workers are still binding) falls back to the kernel's flow hash. Call after open().
    // Returns 0 or a negative errno (UV_EINVAL when not open or `group_size` is 0).
    [[nodiscard]] int spread_randomly(unsigned group_size) noexcept;

    // Starts delivering datagrams to `handler` (not owned; must outlive the socket's receiving).
    [[nodiscard]] int start(DatagramHandler* handler) noexcept;

    // Stops receiving; sending still works until close().
    void stop() noexcept;

    // Sends one datagram now (uv_udp_try_send: no queue, no allocation). Returns the bytes sent
    // or a negative uv error (UV_EAGAIN when the socket buffer is full: the datagram is dropped).
    int send(std::string_view bytes, const sockaddr* to) noexcept;

    // Batched sending. queue() keeps a datagram (copied into the socket's send arena, unless it was
    // written in place into send_buffer()) until flush(), which hands the whole batch to one
    // sendmmsg. The socket flushes by itself in its loop's prepare phase, i.e. before the loop
    // waits for I/O again, and whenever the queue is full. Datagrams the kernel refuses then are
    // reported to the handler's on_send_failed().
    //
    // send_buffer() is where the next queued datagram may be written in place (at least
    // kMaxDatagram bytes; it flushes first when the arena is short of that). queue() returns false
    // only when the socket is closed.
    [[nodiscard]] std::span<char> send_buffer() noexcept;
    bool queue(std::string_view bytes, const sockaddr* to) noexcept;
    void flush() noexcept;

    // Closes the handle; the loop runs its close callback later. Safe to call twice.
    void close() noexcept;

    // The bound address (port filled in when bound to port 0).
    [[nodiscard]] sockaddr_storage local_address() const noexcept;
    [[nodiscard]] bool using_recvmmsg() const noexcept;

    // Batched receive: up to this many datagrams per recvmmsg call.
    static constexpr std::size_t kBatch = 16;
    // libuv hands each datagram of a batch a 64 KiB slice of one receive buffer.
    static constexpr std::size_t kSlice = 64 * 1024;
    // Send queue: datagrams per sendmmsg, the largest datagram, and the arena they are kept in.
    static constexpr std::size_t kSendBatch = 64;
    static constexpr std::size_t kMaxDatagram = 65535;
    static constexpr std::size_t kSendArena = 256 * 1024;

  private:
    static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf) noexcept;
    static void on_recv(uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr,
                        unsigned flags) noexcept;
    static void on_closed(uv_handle_t* h) noexcept;

    // Heap-allocated so the handle's address stays put even if the owner moves; freed by the
    // close callback (or the destructor when never opened).
    struct State;
    State* state_ = nullptr;
};

}  // namespace sipr::net
