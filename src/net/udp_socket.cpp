#include "sipr/net/udp_socket.h"

#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sipr/net/endpoint.h"

namespace sipr::net {

struct UdpSocket::State {
    uv_udp_t handle{};
    uv_prepare_t flusher{};
    DatagramHandler* handler = nullptr;
    bool opened = false;
    bool closing = false;
    int open_handles = 0;  // handles whose close callback is still due
    // One receive buffer per socket, reused for every batch: no per-datagram allocation.
    alignas(64) char buffer[kBatch * kSlice];
    // The send queue: datagrams laid end to end in `arena`, sent by one sendmmsg.
    alignas(64) char arena[kSendArena];
    std::size_t arena_used = 0;
    std::size_t queued = 0;
    mmsghdr msgs[kSendBatch]{};
    iovec iov[kSendBatch]{};
    sockaddr_storage to[kSendBatch]{};

    void flush() noexcept;
};

void UdpSocket::State::flush() noexcept {
    if (queued == 0) return;
    int fd = -1;
    std::size_t sent = 0;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&handle), &fd) == 0) {
        while (sent < queued) {
            int n = ::sendmmsg(fd, msgs + sent, static_cast<unsigned>(queued - sent), MSG_DONTWAIT);
            if (n > 0) {
                sent += static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            // EAGAIN (buffer full) or an error of the first datagram (e.g. an unreachable
            // destination): that one is lost; the rest get their own try.
            ++sent;
            if (handler != nullptr) handler->on_send_failed(1);
        }
    } else if (handler != nullptr) {
        handler->on_send_failed(queued);
    }
    queued = 0;
    arena_used = 0;
}

void UdpSocket::on_closed(uv_handle_t* h) noexcept {
    auto* st = static_cast<State*>(h->data);
    if (--st->open_handles == 0) delete st;
}

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
    // datagrams over the sockets by flow hash (or at random after spread_randomly()).
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
    auto* st = new State;  // freed by on_closed (or the destructor if never opened)
    int rc = uv_udp_init_ex(loop, &st->handle, AF_UNSPEC | UV_UDP_RECVMMSG);
    if (rc != 0) {
        ::close(fd);
        delete st;
        return rc;
    }
    st->handle.data = st;
    st->flusher.data = st;
    st->opened = true;
    st->open_handles = 2;
    state_ = st;
    uv_prepare_init(loop, &st->flusher);
    rc = uv_udp_open(&st->handle, fd);
    if (rc != 0) {
        ::close(fd);
        // The handles were initialised; they must be closed through the loop before freeing.
        close();
        return rc;
    }
    // Flush the send queue every time the loop is about to wait for I/O.
    uv_prepare_start(&st->flusher, [](uv_prepare_t* p) { static_cast<State*>(p->data)->flush(); });
    // The prepare handle alone must not keep the loop alive.
    uv_unref(reinterpret_cast<uv_handle_t*>(&st->flusher));
    return 0;
}

int UdpSocket::spread_randomly(unsigned group_size) noexcept {
    if (state_ == nullptr || state_->closing || group_size == 0) return UV_EINVAL;
    int fd = -1;
    if (int rc = uv_fileno(reinterpret_cast<uv_handle_t*>(&state_->handle), &fd); rc != 0)
        return rc;
    // A = a random 32-bit number (the kernel's prandom, one per datagram); A %= group_size;
    // return A: the index of the socket in the reuseport group. Random, not by CPU: the CPU that
    // receives one flow's packets is the same for the whole flow (RSS/RPS), so it would not
    // spread a load balancer's single flow. Each datagram is independent (the To-tag is a keyed
    // hash, the registrar's state is in Redis), so any worker may take any retransmission.
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_RANDOM)),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, group_size),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0)
        return -errno;
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
    uv_buf_t buf =
        uv_buf_init(const_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
    return uv_udp_try_send(&state_->handle, &buf, 1, to);
}

std::span<char> UdpSocket::send_buffer() noexcept {
    if (state_ == nullptr || state_->closing) return {};
    State& st = *state_;
    if (st.queued == kSendBatch || kSendArena - st.arena_used < kMaxDatagram) st.flush();
    return {st.arena + st.arena_used, kSendArena - st.arena_used};
}

bool UdpSocket::queue(std::string_view bytes, const sockaddr* to) noexcept {
    if (state_ == nullptr || state_->closing) return false;
    State& st = *state_;
    char* at = st.arena + st.arena_used;
    if (bytes.data() != at) {  // not written in place: copy it into the arena
        if (st.queued == kSendBatch || kSendArena - st.arena_used < bytes.size()) {
            st.flush();
            at = st.arena;
        }
        if (bytes.size() > kSendArena) return send(bytes, to) >= 0;
        std::memcpy(at, bytes.data(), bytes.size());
    } else if (st.queued == kSendBatch) {
        return send(bytes, to) >= 0;  // cannot happen through send_buffer(), which flushes first
    }
    std::size_t i = st.queued++;
    std::memcpy(&st.to[i], to, sockaddr_len(to));
    st.iov[i] = {at, bytes.size()};
    st.msgs[i] = {};
    st.msgs[i].msg_hdr.msg_name = &st.to[i];
    st.msgs[i].msg_hdr.msg_namelen = sockaddr_len(to);
    st.msgs[i].msg_hdr.msg_iov = &st.iov[i];
    st.msgs[i].msg_hdr.msg_iovlen = 1;
    st.arena_used += bytes.size();
    if (st.queued == kSendBatch) st.flush();
    return true;
}

void UdpSocket::flush() noexcept {
    if (state_ != nullptr && !state_->closing) state_->flush();
}

void UdpSocket::close() noexcept {
    if (state_ == nullptr || state_->closing) return;
    state_->flush();  // what was answered is sent
    state_->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&state_->handle), &UdpSocket::on_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&state_->flusher), &UdpSocket::on_closed);
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
