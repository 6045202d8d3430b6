#include "sipr/net/stream_server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "sipr/net/endpoint.h"

namespace sipr::net {

namespace {

constexpr uint32_t slot_of(ConnectionId id) noexcept {
    return static_cast<uint32_t>(id & 0xffffffffu);
}

}  // namespace

struct Conn;

struct StreamServer::State {
    uv_loop_t* loop = nullptr;
    uv_tcp_t listener{};
    uv_timer_t sweeper{};
    StreamLimits limits;
    StreamStats* stats = nullptr;
    StreamHandler* handler = nullptr;
    AddressSet allow;
    int open_handles = 0;  // handles whose close callback is still due
    bool closing = false;
    bool listener_open = false;  // until its close began
    bool accepting = false;
    std::vector<Conn*> slots;          // index: a connection's slot; null: free
    std::vector<uint32_t> generation;  // per slot, bumped when its connection closes
    std::size_t open = 0;
    std::map<IpKey, uint32_t> per_source;  // open connections per source address

    Conn* find(ConnectionId id) noexcept;
    void close_conn(Conn* c, StreamClose why) noexcept;
    void release() noexcept {
        if (--open_handles == 0 && closing) delete this;
    }
};

struct Conn {
    uv_tcp_t tcp{};
    uv_write_t req{};
    StreamServer::State* st = nullptr;
    ConnectionId id = 0;
    IpKey source;
    uint64_t last_ms = 0;
    uint64_t head_since_ms = 0;  // 0: no incomplete head
    bool reading = false;
    bool paused = false;
    bool writing = false;  // `sending` is in flight
    bool closing = false;
    bool close_when_sent = false;
    StreamClose close_why = StreamClose::Peer;
    std::vector<char> sending;  // handed to uv_write; untouched until its callback
    std::vector<char> queued;   // written since, sent when `sending` is done
};

Conn* StreamServer::State::find(ConnectionId id) noexcept {
    const uint32_t slot = slot_of(id);
    if (id == 0 || slot >= slots.size()) return nullptr;
    Conn* c = slots[slot];
    return c != nullptr && c->id == id && !c->closing ? c : nullptr;
}

namespace {

void on_conn_closed(uv_handle_t* h) noexcept {
    auto* c = static_cast<Conn*>(h->data);
    StreamServer::State* st = c->st;
    delete c;
    st->release();
}

void start_write(Conn* c) noexcept;

void on_written(uv_write_t* req, int status) noexcept {
    auto* c = static_cast<Conn*>(req->data);
    c->writing = false;
    if (c->closing) return;  // cancelled by the close
    if (status < 0) {
        c->st->close_conn(c, StreamClose::Error);
        return;
    }
    c->st->stats->bytes_out.inc(c->sending.size());
    c->last_ms = uv_now(c->st->loop);
    c->sending.clear();
    if (!c->queued.empty()) {
        start_write(c);
    } else if (c->close_when_sent) {
        c->st->close_conn(c, c->close_why);
    }
}

void start_write(Conn* c) noexcept {
    std::swap(c->sending, c->queued);
    c->queued.clear();
    uv_buf_t buf = uv_buf_init(c->sending.data(), static_cast<unsigned>(c->sending.size()));
    c->req.data = c;
    int rc = uv_write(&c->req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1, &on_written);
    if (rc != 0) {
        c->st->close_conn(c, StreamClose::Error);
        return;
    }
    c->writing = true;
}

void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept {
    auto* c = static_cast<Conn*>(h->data);
    std::span<char> space;
    if (!c->closing && c->st->handler != nullptr) space = c->st->handler->read_space(c->id);
    *buf = uv_buf_init(space.data(), static_cast<unsigned>(space.size()));
}

void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t*) noexcept {
    auto* c = static_cast<Conn*>(s->data);
    if (c->closing) return;
    StreamServer::State* st = c->st;
    if (nread < 0) {
        st->close_conn(c, nread == UV_EOF || nread == UV_ECONNRESET ? StreamClose::Peer
                          : nread == UV_ENOBUFS                     ? StreamClose::Protocol
                                                                    : StreamClose::Error);
        return;
    }
    if (nread == 0) return;
    const uint64_t now = uv_now(st->loop);
    c->last_ms = now;
    st->stats->bytes_in.inc(static_cast<uint64_t>(nread));
    const bool head = st->handler->on_read(c->id, static_cast<std::size_t>(nread));
    if (c->closing) return;
    if (!head)
        c->head_since_ms = 0;
    else if (c->head_since_ms == 0)
        c->head_since_ms = now;
}

// The limits that need a clock: one sweep of the connections every tick.
void on_sweep(uv_timer_t* t) noexcept {
    auto* st = static_cast<StreamServer::State*>(t->data);
    const uint64_t now = uv_now(st->loop);
    for (Conn* c : st->slots) {
        if (c == nullptr || c->closing) continue;
        if (c->head_since_ms != 0 && now - c->head_since_ms >= st->limits.head_ms)
            st->close_conn(c, StreamClose::HeadTimeout);
        else if (now - c->last_ms >= st->limits.idle_ms)
            st->close_conn(c, StreamClose::Idle);
    }
}

void refuse(StreamServer::State* st, Conn* c, StreamRefusal why) noexcept {
    st->stats->refuse(why);
    // A reset, not a FIN: the refused client learns at once and no TIME_WAIT is left here.
    if (uv_tcp_close_reset(&c->tcp, &on_conn_closed) != 0)
        uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), &on_conn_closed);
}

void on_connection(uv_stream_t* server, int status) noexcept {
    auto* st = static_cast<StreamServer::State*>(server->data);
    if (status < 0 || st->closing) return;
    // Every pending connection is accepted, refused ones too (then reset at once), so one
    // client cannot fill the backlog and keep the others out.
    auto* c = new Conn;
    c->st = st;
    c->tcp.data = c;
    uv_tcp_init(st->loop, &c->tcp);
    ++st->open_handles;
    if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), &on_conn_closed);
        return;
    }
    sockaddr_storage peer{};
    int len = sizeof peer;
    if (uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&peer), &len) != 0 ||
        !ip_key(reinterpret_cast<const sockaddr*>(&peer), c->source)) {
        uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), &on_conn_closed);
        return;
    }
    if (!st->allow.empty() && !st->allow.contains(c->source))
        return refuse(st, c, StreamRefusal::Denied);
    if (st->open >= st->limits.max_connections) return refuse(st, c, StreamRefusal::Connections);
    uint32_t& from_source = st->per_source[c->source];
    if (from_source >= st->limits.max_per_source) {
        if (from_source == 0) st->per_source.erase(c->source);
        return refuse(st, c, StreamRefusal::PerSource);
    }
    ++from_source;
    uint32_t slot = 0;
    while (slot < st->slots.size() && st->slots[slot] != nullptr) ++slot;
    if (slot == st->slots.size()) {
        st->slots.push_back(nullptr);
        st->generation.push_back(0);
    }
    st->slots[slot] = c;
    c->id = uint64_t{++st->generation[slot]} << 32 | slot;
    c->last_ms = uv_now(st->loop);
    ++st->open;
    st->stats->open.add(1);
    st->stats->accepted.inc();
    (void)uv_tcp_nodelay(&c->tcp, 1);  // answers are whole messages: no reason to hold them
    st->handler->on_open(c->id, reinterpret_cast<const sockaddr*>(&peer));
    if (c->closing) return;
    c->reading = uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), &on_alloc, &on_read) == 0;
    if (!c->reading) st->close_conn(c, StreamClose::Error);
}

}  // namespace

void StreamServer::State::close_conn(Conn* c, StreamClose why) noexcept {
    if (c->closing) return;
    c->closing = true;
    stats->close(why);
    stats->open.add(-1);
    --open;
    if (auto it = per_source.find(c->source); it != per_source.end() && --it->second == 0)
        per_source.erase(it);
    slots[slot_of(c->id)] = nullptr;
    if (handler != nullptr) handler->on_closed(c->id, why);
    // A write in flight is cancelled: its callback runs (ECANCELED) before the close callback.
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), &on_conn_closed);
}

StreamServer::StreamServer(StreamLimits limits, StreamStats& stats) noexcept
    : limits_(limits), stats_(stats) {}

StreamServer::~StreamServer() {
    // An opened server is freed by its close callbacks; the loop must have run them by now.
    close();
}

int StreamServer::open(uv_loop_t* loop, const sockaddr* addr) noexcept {
    if (state_ != nullptr) return UV_EBUSY;
    int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    // libuv 1.44 has no SO_REUSEPORT for TCP either: every worker listens on the same port and
    // the kernel hands each new connection to one of them.
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (addr->sa_family == AF_INET6 &&
         ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        ::bind(fd, addr, sockaddr_len(addr)) != 0) {
        int err = -errno;
        ::close(fd);
        return err;
    }
    auto* st = new State;
    st->loop = loop;
    st->limits = limits_;
    st->stats = &stats_;
    uv_tcp_init(loop, &st->listener);
    uv_timer_init(loop, &st->sweeper);
    st->listener.data = st;
    st->sweeper.data = st;
    st->open_handles = 2;
    st->listener_open = true;
    state_ = st;
    int rc = uv_tcp_open(&st->listener, fd);
    if (rc != 0) {
        ::close(fd);
        close();
        return rc;
    }
    return 0;
}

int StreamServer::start(StreamHandler* handler, const AddressSet& allow) noexcept {
    if (state_ == nullptr || state_->closing) return UV_EINVAL;
    State& st = *state_;
    st.handler = handler;
    st.allow = allow;
    int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&st.listener), 511, &on_connection);
    if (rc != 0) return rc;
    st.accepting = true;
    // A tick of a quarter of the shortest deadline (50 ms to 1 s): a limit is enforced within
    // 25% of itself.
    uint64_t tick =
        std::clamp<uint64_t>(std::min(st.limits.idle_ms, st.limits.head_ms) / 4, 50, 1000);
    uv_timer_start(&st.sweeper, &on_sweep, tick, tick);
    uv_unref(reinterpret_cast<uv_handle_t*>(&st.sweeper));
    return 0;
}

void StreamServer::stop_accepting() noexcept {
    if (state_ == nullptr || state_->closing || !state_->listener_open) return;
    // libuv cannot stop listening without closing: the listener goes, the connections stay.
    state_->accepting = false;
    state_->listener_open = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&state_->listener),
             [](uv_handle_t* h) { static_cast<State*>(h->data)->release(); });
}

bool StreamServer::write(ConnectionId id, std::string_view bytes) noexcept {
    if (state_ == nullptr) return false;
    Conn* c = state_->find(id);
    if (c == nullptr || c->close_when_sent) return false;
    if (!c->writing && c->queued.empty()) {
        // The common case: the socket takes the whole answer now, with no copy.
        uv_buf_t buf =
            uv_buf_init(const_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
        int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1);
        if (n < 0 && n != UV_EAGAIN) {
            state_->close_conn(c, StreamClose::Error);
            return false;
        }
        if (n > 0) {
            stats_.bytes_out.inc(static_cast<uint64_t>(n));
            c->last_ms = uv_now(state_->loop);
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
        if (bytes.empty()) return true;
    }
    if (c->sending.size() + c->queued.size() + bytes.size() > limits_.max_write_buffer) {
        // A client that does not read is disconnected, not buffered for.
        state_->close_conn(c, StreamClose::Backlog);
        return false;
    }
    c->queued.insert(c->queued.end(), bytes.begin(), bytes.end());
    if (!c->writing) start_write(c);
    return !c->closing;
}

void StreamServer::pause(ConnectionId id) noexcept {
    if (state_ == nullptr) return;
    if (Conn* c = state_->find(id); c != nullptr && !c->paused) {
        c->paused = true;
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
    }
}

void StreamServer::resume(ConnectionId id) noexcept {
    if (state_ == nullptr) return;
    if (Conn* c = state_->find(id); c != nullptr && c->paused && !c->close_when_sent) {
        c->paused = false;
        if (uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), &on_alloc, &on_read) != 0)
            state_->close_conn(c, StreamClose::Error);
    }
}

void StreamServer::close(ConnectionId id, StreamClose why) noexcept {
    if (state_ == nullptr) return;
    if (Conn* c = state_->find(id); c != nullptr) state_->close_conn(c, why);
}

void StreamServer::close_after_write(ConnectionId id, StreamClose why) noexcept {
    if (state_ == nullptr) return;
    Conn* c = state_->find(id);
    if (c == nullptr) return;
    if (!c->writing && c->queued.empty()) {
        state_->close_conn(c, why);
        return;
    }
    c->close_when_sent = true;
    c->close_why = why;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
}

void StreamServer::close() noexcept {
    if (state_ == nullptr || state_->closing) return;
    State* st = state_;
    state_ = nullptr;
    for (Conn* c : st->slots)
        if (c != nullptr) st->close_conn(c, StreamClose::Shutdown);
    st->handler = nullptr;
    st->closing = true;
    st->accepting = false;
    if (st->listener_open) {
        st->listener_open = false;
        uv_close(reinterpret_cast<uv_handle_t*>(&st->listener),
                 [](uv_handle_t* h) { static_cast<State*>(h->data)->release(); });
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&st->sweeper),
             [](uv_handle_t* h) { static_cast<State*>(h->data)->release(); });
}

sockaddr_storage StreamServer::local_address() const noexcept {
    sockaddr_storage ss{};
    if (state_ != nullptr && state_->listener_open) {
        int len = sizeof ss;
        (void)uv_tcp_getsockname(&state_->listener, reinterpret_cast<sockaddr*>(&ss), &len);
    }
    return ss;
}

std::size_t StreamServer::open_connections() const noexcept {
    return state_ != nullptr ? state_->open : 0;
}

}  // namespace sipr::net
