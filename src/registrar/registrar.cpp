#include "sipr/registrar/registrar.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <ctime>

#include "sipr/base/ascii.h"
#include "sipr/location/binding.h"
#include "sipr/sip/aor.h"
#include "sipr/sip/headers.h"

namespace sipr::registrar {

using location::StoreError;

namespace {

// Option tags this registrar understands in Require (RFC 3261 §10.3 step 2).
constexpr std::array<std::string_view, 1> kKnownOptions{"path"};

constexpr std::string_view kAllow = "Allow: REGISTER, OPTIONS\r\n";

// The largest answer we ever write: a UDP datagram's payload. --max-response and the
// amplification guard bound each answer below it.
constexpr std::size_t kMaxResponse = 65000;

}  // namespace

struct Registrar::Slot {
    std::vector<char> buf;
    std::size_t len = 0;
    sip::Message msg;
    sip::RequestCore core;
    sip::Peer peer;
    std::size_t limit = 0;              // the largest answer this REGISTER may get
    location::RegisterChanges changes;  // changes.aor is the AOR from the moment the slot is taken
    std::string auth_extra;             // the authenticator's headers for a 401
    RegistrationResult kind = RegistrationResult::Ok;
    bool echo_path = false;
    Registrar* owner = nullptr;
};

std::string format_sip_date(int64_t unix_ms) {
    std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return std::string(buf, n);
}

std::string format_q(uint16_t q) {
    std::array<char, 8> buf{};
    base::BufferWriter w(buf);
    sip::append_q(w, q);
    return std::string(w.view());
}

std::string contact_key(const sip::Uri& uri, std::string_view uri_text, std::string_view instance) {
    location::ContactUri c;
    c.text = uri_text;
    c.scheme_len = uri.scheme_text.size();
    c.host_at = uri.host.empty() ? uri_text.size()
                                 : static_cast<std::size_t>(uri.host.data() - uri_text.data());
    c.host_len = uri.host.size();
    return location::binding_key(c, instance);
}

Registrar::Registrar(Config config, location::RegisterStore& store, sip::Sender& sender,
                     sip::MessageStats& messages, RegistrarStats& stats)
    : config_(std::move(config)),
      store_(store),
      sender_(sender),
      messages_(messages),
      stats_(stats),
      msg_(std::make_unique<sip::Message>()),
      out_(kMaxResponse) {}

Registrar::~Registrar() = default;

std::string_view Registrar::retry_after_line() noexcept {
    base::BufferWriter w(retry_after_);
    w.append("Retry-After: ");
    w.append_uint(config_.retry_after_s);
    w.append("\r\n");
    return w.view();
}

bool Registrar::serves(std::string_view host) const noexcept {
    return sip::serves_domain(config_.domains, host);
}

std::span<char> Registrar::response_buffer(std::size_t limit) noexcept {
    return sip::response_buffer(sender_, out_, limit);
}

std::size_t Registrar::response_limit(std::size_t request_size, bool trusted) const noexcept {
    std::size_t limit = std::clamp<std::size_t>(config_.max_response, 512, kMaxResponse);
    if (trusted || config_.max_amplification <= 0) return limit;
    // A fetch (REGISTER without Contact) needs no credentials with --auth none, and nonce-counts
    // of one's own account can be computed offline with --auth digest: either way a spoofed
    // source could turn a small REGISTER into a large 200 aimed at a victim. As in sip-redirectd,
    // the default 3 is QUIC's bound for an unvalidated address (RFC 9000 §8.1).
    const double amplified = static_cast<double>(request_size) * config_.max_amplification;
    return amplified < static_cast<double>(limit) ? static_cast<std::size_t>(amplified) : limit;
}

void Registrar::respond(const sip::Message& msg, const sip::RequestCore& core, const sip::Peer& to,
                        std::size_t limit, uint16_t status, std::string_view reason,
                        std::string_view extra) noexcept {
    std::string_view out = sip::write_response(msg, core, status, reason, extra, config_.tag_key,
                                               response_buffer(limit), to.source());
    if (out.empty()) {
        messages_.drop(base::DropReason::ResponseTooLarge);
        return;
    }
    if (sender_.send(out, to, sip::response_port(core.top_via, to.port)))
        messages_.response(status);
    else
        messages_.drop(base::DropReason::SendFailed);
}

void Registrar::on_datagram(std::string_view bytes, const sip::Peer& from, bool trusted) noexcept {
    const std::size_t limit =
        from.transport == sip::Transport::Udp
            ? response_limit(bytes.size(), trusted)
            : std::clamp<std::size_t>(config_.max_response_stream, 512, kMaxResponse);
    sip::Message& msg = *msg_;
    sip::RequestCore& core = core_;
    sip::IntakeResult r = sip::intake(bytes, config_.max_message, config_.max_headers, msg, core);
    if (r.action == sip::IntakeAction::Drop) {
        messages_.drop(r.drop);
        return;
    }
    messages_.request(msg.method);
    if (r.action == sip::IntakeAction::Respond) {
        respond(msg, core, from, limit, r.status, r.reason, {});
        return;
    }
    if (msg.method == sip::Method::Ack) return;  // absorbed: no transaction to end
    if (core.request_uri_status == sip::UriStatus::UnsupportedScheme) {
        respond(msg, core, from, limit, 416, "Unsupported URI Scheme", {});
        return;
    }
    switch (msg.method) {
        case sip::Method::Register:
            handle_register(msg, core, bytes, from, limit);
            return;
        case sip::Method::Options:
            // The registrar's health probe: 503 while Redis is unreachable so a balancer drains it.
            if (store_.available())
                respond(msg, core, from, limit, 200, "OK", kAllow);
            else
                respond(msg, core, from, limit, 503, "Service Unavailable", retry_after_line());
            return;
        default:
            respond(msg, core, from, limit, 405, "Method Not Allowed", kAllow);
            return;
    }
}

void Registrar::handle_register(const sip::Message& in_msg, const sip::RequestCore& in_core,
                                std::string_view bytes, const sip::Peer& from,
                                std::size_t limit) noexcept {
    auto reply = [&](uint16_t status, std::string_view reason, std::string_view extra = {}) {
        respond(in_msg, in_core, from, limit, status, reason, extra);
        stats_.registration(status >= 500 ? RegistrationResult::StoreError
                                          : RegistrationResult::Refused);
    };
    const std::string_view retry_after = retry_after_line();

    // §10.3 step 1: the Request-URI names a domain we serve.
    if (in_core.request_uri.scheme == sip::Scheme::Tel || !serves(in_core.request_uri.host)) {
        reply(404, "Domain Not Served");
        return;
    }
    // Step 2: Require with an option we do not know. Its tags are echoed in Unsupported, so each
    // must be a token first.
    if (!sip::option_tags_valid(in_msg, sip::HeaderId::Require)) {
        reply(400, "Malformed Require Header");
        return;
    }
    std::string unsupported;
    for (std::size_t i = 0; i < in_msg.header_count; ++i) {
        const sip::Header& h = in_msg.headers[i];
        if (h.id != sip::HeaderId::Require) continue;
        std::string_view tag = base::trim(h.value);
        bool known = std::any_of(kKnownOptions.begin(), kKnownOptions.end(),
                                 [&](std::string_view k) { return base::iequals(k, tag); });
        if (!known) {
            if (!unsupported.empty()) unsupported += ", ";
            unsupported += tag;
        }
    }
    if (!unsupported.empty()) {
        reply(420, "Bad Extension", "Unsupported: " + unsupported + "\r\n");
        return;
    }
    // Step 5: the To header names the address-of-record.
    char aor_buf[sip::kMaxAorLength];
    std::size_t aor_len = 0;
    if (sip::normalize_aor(in_core.to.addr.uri, in_core.request_uri.host, aor_buf, aor_len) !=
        sip::AorStatus::Ok) {
        reply(404, "Not Found");
        return;
    }
    std::string_view aor(aor_buf, aor_len);
    std::string_view aor_host = aor.substr(aor.rfind('@') + 1);  // the user may hold an escaped '@'
    if (!serves(aor_host)) {
        reply(403, "Domain Not Served");
        return;
    }
    if (pending_ >= config_.max_pending) {
        reply(503, "Service Unavailable", retry_after);
        return;
    }
    // Copy the datagram into a slot: the authenticator and the store answer after this receive
    // callback returns.
    Slot* slot = slots_.acquire();
    if (slot->owner == nullptr) {  // made just now
        slot->owner = this;
        slot->buf.resize(config_.max_message);
        slot->auth_extra.reserve(512);  // two challenges: no allocation when answering 401
    }
    std::memcpy(slot->buf.data(), bytes.data(), bytes.size());
    slot->len = bytes.size();
    slot->peer = from;
    slot->limit = limit;
    std::string_view copy(slot->buf.data(), slot->len);
    if (sip::intake(copy, config_.max_message, config_.max_headers, slot->msg, slot->core).action !=
        sip::IntakeAction::Proceed) {
        slots_.release(slot);  // cannot happen: the same bytes parsed a moment ago
        return;
    }
    slot->changes.aor.assign(aor);

    // Steps 3-4: authentication. Without an authenticator nothing waits here.
    if (auth_ != nullptr) {
        Authenticator::Verdict v =
            auth_->check(slot->msg, slot->core, copy, slot->peer, slot->changes.aor,
                         slot->auth_extra, &Registrar::on_authenticated, slot);
        if (v == Authenticator::Verdict::Pending) {
            ++pending_;
            return;
        }
        if (v != Authenticator::Verdict::Allow && v != Authenticator::Verdict::Retransmission) {
            refuse(slot, v);
            return;
        }
        slot->changes.retransmission = v == Authenticator::Verdict::Retransmission;
    } else {
        slot->changes.retransmission = false;
    }
    store_register(slot);
}

void Registrar::on_authenticated(void* ctx, Authenticator::Verdict verdict) noexcept {
    auto* slot = static_cast<Slot*>(ctx);
    Registrar* self = slot->owner;
    --self->pending_;
    if (verdict == Authenticator::Verdict::Allow ||
        verdict == Authenticator::Verdict::Retransmission) {
        slot->changes.retransmission = verdict == Authenticator::Verdict::Retransmission;
        self->store_register(slot);
    } else {
        self->refuse(slot, verdict);
    }
}

void Registrar::refuse(Slot* slot, Authenticator::Verdict verdict) noexcept {
    using V = Authenticator::Verdict;
    const sip::Message& msg = slot->msg;
    const sip::RequestCore& core = slot->core;
    switch (verdict) {
        case V::Reject:
            stats_.auth_failures.inc();
            [[fallthrough]];
        case V::Challenge:
            respond(msg, core, slot->peer, slot->limit, 401, "Unauthorized", slot->auth_extra);
            stats_.registration(RegistrationResult::Refused);
            break;
        case V::Forbidden:
            stats_.auth_failures.inc();
            respond(msg, core, slot->peer, slot->limit, 403, "Forbidden", {});
            stats_.registration(RegistrationResult::Refused);
            break;
        case V::BadRequest:
            // Not a password failure: the request is malformed, whatever the password.
            respond(msg, core, slot->peer, slot->limit, 400, "Digest URI Mismatch", {});
            stats_.registration(RegistrationResult::Refused);
            break;
        case V::Allow:
        case V::Retransmission:
        case V::Pending:  // never given to refuse(); answer as for a store failure
        case V::Unavailable:
            respond(msg, core, slot->peer, slot->limit, 503, "Service Unavailable",
                    retry_after_line());
            stats_.registration(RegistrationResult::StoreError);
            break;
    }
    slots_.release(slot);
}

void Registrar::store_register(Slot* slot) noexcept {
    const sip::Message& msg = slot->msg;
    const sip::RequestCore& core = slot->core;
    const sip::Peer& from = slot->peer;
    auto release = [&] { slots_.release(slot); };
    // Answers and frees the slot (the answer is written from the slot's message first).
    auto reply = [&](uint16_t status, std::string_view reason, std::string_view extra = {}) {
        respond(msg, core, from, slot->limit, status, reason, extra);
        stats_.registration(status >= 500 ? RegistrationResult::StoreError
                                          : RegistrationResult::Refused);
        release();
    };
    const std::string_view retry_after = retry_after_line();

    // Expires header: the default for contacts without their own parameter.
    uint32_t header_expires = config_.default_expires;
    if (const sip::Header* e = msg.find(sip::HeaderId::Expires)) {
        if (!sip::parse_expires(e->value, header_expires)) {
            reply(400, "Malformed Expires Header");
            return;
        }
    }
    bool has_expires_header = msg.find(sip::HeaderId::Expires) != nullptr;

    location::RegisterChanges& ch = slot->changes;
    ch.remove_all = false;
    ch.call_id.assign(core.call_id);
    ch.cseq = core.cseq.number;
    ch.contacts.clear();
    ch.max_contacts = config_.max_contacts;
    ch.evict_oldest = config_.evict_oldest;

    // RFC 3327: keep the Path only when the UA says it supports it.
    std::string path;
    slot->echo_path = false;
    if (sip::has_option_tag(msg, sip::HeaderId::Supported, "path")) {
        for (std::size_t i = 0; i < msg.header_count; ++i) {
            if (msg.headers[i].id != sip::HeaderId::Path) continue;
            if (!path.empty()) path += ", ";
            path += msg.headers[i].value;
        }
        slot->echo_path = !path.empty();
    }
    std::string received;
    if (from.addr.ss_family == AF_INET6)
        received = "[" + std::string(from.source().ip) + "]";
    else
        received = std::string(from.source().ip);
    received += ":" + std::to_string(from.port);
    std::string_view user_agent;
    if (const sip::Header* ua = msg.find(sip::HeaderId::UserAgent)) user_agent = ua->value;

    std::size_t n_contacts = msg.count(sip::HeaderId::Contact);
    bool any_added = false;
    for (std::size_t i = 0; i < msg.header_count; ++i) {
        const sip::Header& h = msg.headers[i];
        if (h.id != sip::HeaderId::Contact) continue;
        sip::Contact c;
        if (!sip::parse_contact(h.value, c)) {
            reply(400, "Malformed Contact Header");
            return;
        }
        if (c.star) {
            // Step 6: "*" only alone and with Expires: 0.
            if (n_contacts != 1 || !has_expires_header || header_expires != 0) {
                reply(400, "Invalid Wildcard Contact");
                return;
            }
            ch.remove_all = true;
            continue;
        }
        uint32_t expires = c.has_expires ? c.expires : header_expires;
        if (expires != 0 && expires < config_.min_expires) {
            std::string extra = "Min-Expires: " + std::to_string(config_.min_expires) + "\r\n";
            reply(423, "Interval Too Brief", extra);
            return;
        }
        expires = std::min(expires, config_.max_expires);
        location::Binding b;
        b.cseq = core.cseq.number;
        b.call_id = core.call_id;
        b.contact = c.addr.uri_text;
        b.q = c.q;
        b.path = path;
        b.received = received;
        b.user_agent = user_agent;
        b.instance = c.instance;
        b.has_reg_id = c.has_reg_id;
        b.reg_id = c.reg_id;
        location::ContactChange change;
        change.key = contact_key(c.addr.uri, c.addr.uri_text, c.instance);
        change.expires_s = expires;
        if (expires != 0) {
            change.tail = location::pack_binding_tail(b);
            any_added = true;
        }
        ch.contacts.push_back(std::move(change));
    }
    slot->kind = n_contacts == 0 ? RegistrationResult::Fetch
                 : any_added     ? RegistrationResult::Ok
                                 : RegistrationResult::Removed;

    StoreError err = store_.apply_register(ch, &Registrar::on_stored, slot);
    if (err != StoreError::None) {
        stats_.redis_error(location::redis_error_kind(err));
        reply(503, "Service Unavailable", retry_after);
        return;
    }
    ++pending_;
}

void Registrar::on_stored(void* ctx, const location::RegisterReply& reply) noexcept {
    auto* slot = static_cast<Slot*>(ctx);
    slot->owner->finish(slot, reply);
}

void Registrar::finish(Slot* slot, const location::RegisterReply& reply) noexcept {
    --pending_;
    const sip::Message& msg = slot->msg;
    const sip::RequestCore& core = slot->core;
    const std::string_view retry_after = retry_after_line();

    switch (reply.error) {
        case StoreError::None:
            break;
        case StoreError::Stale:
            // §10.3 step 7: same Call-ID, lower CSeq: the update is aborted and the request fails.
            respond(msg, core, slot->peer, slot->limit, 500, "Request Out Of Order", retry_after);
            stats_.registration(RegistrationResult::Stale);
            slots_.release(slot);
            return;
        case StoreError::TooManyContacts:
            respond(msg, core, slot->peer, slot->limit, 403, "Too Many Contacts", {});
            stats_.registration(RegistrationResult::Refused);
            slots_.release(slot);
            return;
        default:
            stats_.redis_error(location::redis_error_kind(reply.error));
            respond(msg, core, slot->peer, slot->limit, 503, "Service Unavailable", retry_after);
            stats_.registration(RegistrationResult::StoreError);
            slots_.release(slot);
            return;
    }

    // Step 8: 200 OK listing every current binding with its remaining seconds, and a Date.
    std::vector<const location::BindingView*> order;
    order.reserve(reply.bindings.size());
    for (const auto& b : reply.bindings) order.push_back(&b);
    auto own = [&](const location::BindingView* b) {
        return b->call_id == core.call_id && b->cseq == core.cseq.number;
    };
    // This REGISTER's own bindings first (so a cut keeps them), then highest q, then newest.
    std::stable_sort(order.begin(), order.end(), [&](auto* a, auto* b) {
        if (own(a) != own(b)) return own(a);
        if (a->q != b->q) return a->q > b->q;
        return a->updated_at_ms > b->updated_at_ms;
    });

    const std::string date = format_sip_date(reply.now_ms);
    // What follows the contacts: the Path echo, Date and Content-Length (ResponseWriter::finish),
    // so the contacts stop where those still fit.
    std::size_t tail =
        sizeof "Date: \r\n" - 1 + date.size() + sizeof "Content-Length: 0\r\n\r\n" - 1;
    if (slot->echo_path) {
        tail += sizeof "Supported: path\r\n" - 1;
        for (std::size_t i = 0; i < msg.header_count; ++i)
            if (msg.headers[i].id == sip::HeaderId::Path)
                tail += sizeof "Path: \r\n" - 1 + msg.headers[i].value.size();
    }
    sip::ResponseWriter w(response_buffer(slot->limit));
    w.begin(msg, core, 200, "OK", config_.tag_key, slot->peer.source());
    auto& bw = w.writer();
    // Over the limit (--max-response, or the amplification guard) the rest of the bindings are
    // left out and counted: this REGISTER's own come first, so they are the last to go. If not
    // even the head fits, nothing is sent (a counted drop); the bindings are stored all the same.
    std::size_t listed = 0;
    for (const auto* b : order) {
        std::size_t mark = bw.size();
        int64_t left_ms = b->expires_at_ms - reply.now_ms;
        uint64_t left = left_ms <= 0 ? 0 : static_cast<uint64_t>((left_ms + 999) / 1000);
        bw.append("Contact: <");
        bw.append(b->contact);
        bw.append(">;expires=");
        bw.append_uint(left);
        if (b->q != 1000) {
            bw.append(";q=");
            sip::append_q(bw, b->q);
        }
        if (!b->instance.empty()) {
            bw.append(";+sip.instance=\"");
            bw.append(b->instance);
            bw.append('"');
        }
        if (b->has_reg_id) {
            bw.append(";reg-id=");
            bw.append_uint(b->reg_id);
        }
        bw.append("\r\n");
        if (bw.overflow() || bw.size() + tail > bw.capacity()) {
            bw.truncate(mark);
            break;
        }
        ++listed;
    }
    if (listed < order.size()) stats_.contacts_cut.inc(order.size() - listed);
    if (slot->echo_path) {
        for (std::size_t i = 0; i < msg.header_count; ++i)
            if (msg.headers[i].id == sip::HeaderId::Path)
                w.add_header("Path", msg.headers[i].value);
        w.add_header("Supported", "path");
    }
    w.add_header("Date", date);
    std::string_view out = w.finish();
    if (out.empty())
        messages_.drop(base::DropReason::ResponseTooLarge);
    else if (sender_.send(out, slot->peer, sip::response_port(core.top_via, slot->peer.port)))
        messages_.response(200);
    else
        messages_.drop(base::DropReason::SendFailed);
    stats_.registration(slot->kind);
    slots_.release(slot);
}

}  // namespace sipr::registrar
