#include "sipr/net/udp_socket.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sipr/net/endpoint.h"

namespace sipr::net {

struct UdpSocket::State {
    uv_udp_t handle{};
    DatagramHandler* handler = nullptr;
    bool opened = false;
    bool closing = false;
    // One receive buffer per socket, reused for every batch: no per-datagram allocation.
    alignas(64) char buffer[kBatch * kSlice];
};

UdpSocket::UdpSocket() noexcept = default;

UdpSocket::~UdpSocket() {
    // An opened handle is freed by its close callback; the loop must have run it by now.
    if (state_ != nullptr && !state_->opened) delete state_;
}

int UdpSocket::open(uv_loop_t* loop, const sockaddr* addr) noexcept {
    if (state_ != nullptr) return UV_EBUSY;
    int fd = ::socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    // libuv 1.44 lacks UV_UDP_REUSEPORT: every worker binds the same port and the kernel spreads
    // datagrams over the sockets by flow hash.
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        (addr->sa_family == AF_INET6 &&
         ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)) {
        int err = -errno;
        ::close(fd);
        return err;
    }
    int rcvbuf = 4 * 1024 * 1024;  // bursts (mass re-registration) must not overflow the queue
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (::bind(fd, addr, sockaddr_len(addr)) != 0) {
        int err = -errno;
        ::close(fd);
        return err;
    }
    auto* st = new (std::nothrow) State;
    if (st == nullptr) {
        ::close(fd);
        return UV_ENOMEM;
    }
    int rc = uv_udp_init_ex(loop, &st->handle, AF_UNSPEC | UV_UDP_RECVMMSG);
    if (rc == 0) rc = uv_udp_open(&st->handle, fd);
    if (rc != 0) {
        ::close(fd);
        // The handle was initialised; it must be closed through the loop before freeing.
        st->opened = true;
        state_ = st;
        st->handle.data = st;
        close();
        return rc;
    }
    st->handle.data = st;
    st->opened = true;
    state_ = st;
    return 0;
}

int UdpSocket::start(DatagramHandler* handler) noexcept {
    if (state_ == nullptr || state_->closing) return UV_EINVAL;
    state_->handler = handler;
    return uv_udp_recv_start(&state_->handle, &UdpSocket::on_alloc, &UdpSocket::on_recv);
}

void UdpSocket::stop() noexcept {
    if (state_ != nullptr && !state_->closing) uv_udp_recv_stop(&state_->handle);
}

int UdpSocket::send(std::string_view bytes, const sockaddr* to) noexcept {
    if (state_ == nullptr || state_->closing) return UV_EINVAL;
    uv_buf_t buf = uv_buf_init(const_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
    return uv_udp_try_send(&state_->handle, &buf, 1, to);
}

void UdpSocket::close() noexcept {
    if (state_ == nullptr || state_->closing) return;
    state_->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&state_->handle),
             [](uv_handle_t* h) { delete static_cast<State*>(h->data); });
    state_ = nullptr;
}

sockaddr_storage UdpSocket::local_address() const noexcept {
    sockaddr_storage ss{};
    if (state_ != nullptr) {
        int len = sizeof ss;
        (void)uv_udp_getsockname(&state_->handle, reinterpret_cast<sockaddr*>(&ss), &len);
    }
    return ss;
}

bool UdpSocket::using_recvmmsg() const noexcept {
    return state_ != nullptr && uv_udp_using_recvmmsg(&state_->handle) != 0;
}

void UdpSocket::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept {
    auto* st = static_cast<State*>(h->data);
    *buf = uv_buf_init(st->buffer, sizeof st->buffer);
}

void UdpSocket::on_recv(uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr,
                        unsigned flags) noexcept {
    // With recvmmsg libuv calls once per datagram (UV_UDP_MMSG_CHUNK) and then once more with
    // UV_UDP_MMSG_FREE to release the buffer; ours is static, so that call is ignored.
    if (nread <= 0 || addr == nullptr || (flags & UV_UDP_MMSG_FREE) != 0) return;
    auto* st = static_cast<State*>(h->data);
    if (st->handler == nullptr) return;
    if ((flags & UV_UDP_PARTIAL) != 0) return;  // truncated: cannot be a complete message
    st->handler->on_datagram(std::string_view(buf->base, static_cast<std::size_t>(nread)), addr);
}

}  // namespace sipr::net
