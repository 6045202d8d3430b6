#include "stream_front.h"

#include "common.h"

namespace sipr::app {

struct StreamFront::Session {
    explicit Session(std::size_t size) : storage(new char[size]), framer({storage.get(), size}) {}
    std::unique_ptr<char[]> storage;
    sip::StreamFramer framer;
    sip::Peer peer;
    bool open = false;
    bool waiting = false;  // an answer is awaited before the next message is handed over
};

StreamFront::StreamFront(const StreamOptions& options, net::StreamStats& stats)
    : options_(options), server_(options.limits, stats) {}

StreamFront::~StreamFront() = default;

int StreamFront::open(uv_loop_t* loop, const sockaddr* addr, const net::AddressSet& allow,
                      Service* service) noexcept {
    service_ = service;
    if (int rc = server_.open(loop, addr); rc != 0) return rc;
    uv_idle_init(loop, &kick_);
    kick_.data = this;
    kick_open_ = true;
    if (int rc = server_.start(this, allow); rc != 0) {
        close();
        return rc;
    }
    return 0;
}

void StreamFront::close() noexcept {
    server_.close();
    if (kick_open_) {
        kick_open_ = false;
        uv_close(reinterpret_cast<uv_handle_t*>(&kick_), nullptr);
    }
}

void StreamFront::on_kick(uv_idle_t* idle) noexcept {
    auto* self = static_cast<StreamFront*>(idle->data);
    uv_idle_stop(idle);
    // Pumping may answer at once and so queue more connections: work on a copy.
    self->pumping_.swap(self->ready_);
    for (net::ConnectionId id : self->pumping_)
        if (Session* s = self->session(id); s != nullptr) self->pump(*s);
    self->pumping_.clear();
}

StreamFront::Session* StreamFront::session(net::ConnectionId id) noexcept {
    const std::size_t slot = static_cast<std::size_t>(id & 0xffffffffu);
    if (slot >= sessions_.size() || !sessions_[slot]) return nullptr;
    Session* s = sessions_[slot].get();
    return s->open && s->peer.connection == id ? s : nullptr;
}

void StreamFront::on_open(net::ConnectionId id, const sockaddr* peer) noexcept {
    const std::size_t slot = static_cast<std::size_t>(id & 0xffffffffu);
    if (slot >= sessions_.size()) sessions_.resize(slot + 1);
    if (!sessions_[slot]) sessions_[slot] = std::make_unique<Session>(options_.max_message);
    Session& s = *sessions_[slot];
    s.framer.reset();
    fill_peer(peer, s.peer);
    s.peer.transport = sip::Transport::Tcp;
    s.peer.connection = id;
    s.open = true;
    s.waiting = false;
}

std::span<char> StreamFront::read_space(net::ConnectionId id) noexcept {
    Session* s = session(id);
    return s != nullptr ? s->framer.free_space() : std::span<char>{};
}

bool StreamFront::on_read(net::ConnectionId id, std::size_t n) noexcept {
    Session* s = session(id);
    if (s == nullptr) return false;
    s->framer.commit(n);
    pump(*s);
    return s->open && s->framer.head_pending();
}

void StreamFront::on_closed(net::ConnectionId id, net::StreamClose) noexcept {
    if (Session* s = session(id); s != nullptr) {
        s->open = false;
        s->waiting = false;
    }
}

void StreamFront::pump(Session& s) noexcept {
    const net::ConnectionId id = s.peer.connection;
    while (s.open && !s.waiting) {
        const sip::Frame f = s.framer.next();
        switch (f.kind) {
            case sip::FrameKind::NeedMore:
                return;
            case sip::FrameKind::Ping:
                // RFC 5626 §3.5.1: a CRLFCRLF ping gets a CRLF pong.
                (void)server_.write(id, "\r\n");
                break;
            case sip::FrameKind::Message:
                if (service_->handle_stream(f.bytes, s.peer) && s.open) {
                    // The answer comes later (send()); until then nothing more is read.
                    s.waiting = true;
                    server_.pause(id);
                    return;
                }
                break;
            case sip::FrameKind::Error: {
                // The stream cannot be framed past this point: answer what can be answered,
                // then close (RFC 3261 §18.3; Content-Length is mandatory on streams).
                uint16_t status = 400;
                std::string_view reason = "Missing Content-Length";
                if (f.error == sip::FrameError::MessageTooLarge) {
                    status = 513;
                    reason = "Message Too Large";
                } else if (f.error == sip::FrameError::BadContentLength) {
                    reason = "Bad Content-Length";
                }
                if (f.error != sip::FrameError::HeadTooLarge)
                    (void)service_->reject(f.bytes, s.peer, status, reason);
                server_.close_after_write(id, net::StreamClose::Protocol);
                return;
            }
        }
    }
}

bool StreamFront::send(std::string_view bytes, const sip::Peer& to) noexcept {
    const bool sent = server_.write(to.connection, bytes);
    Session* s = session(to.connection);
    if (s != nullptr && s->waiting) {
        s->waiting = false;
        server_.resume(to.connection);
        if (kick_open_) {
            ready_.push_back(to.connection);
            uv_idle_start(&kick_, &StreamFront::on_kick);
        }
    }
    return sent;
}

}  // namespace sipr::app
