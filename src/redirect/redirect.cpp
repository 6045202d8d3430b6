#include "sipr/redirect/redirect.h"

#include <algorithm>
#include <cstring>

#include "sipr/base/ascii.h"
#include "sipr/sip/headers.h"

namespace sipr::redirect {

using location::BindingView;
using location::StoreError;

namespace {

// A redirect server redirects every method (RFC 3261 §8.3) and answers OPTIONS and CANCEL itself.
constexpr std::string_view kAllow =
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, PRACK, UPDATE, INFO, MESSAGE, SUBSCRIBE, NOTIFY, "
    "REFER, PUBLISH\r\n";
constexpr std::size_t kMaxCandidates = 256;
constexpr std::string_view kTail = "Content-Length: 0\r\n\r\n";

// "Retry-After: <s>\r\n" written into `buf`.
std::string_view retry_after(uint32_t seconds, std::span<char> buf) noexcept {
    base::BufferWriter w(buf);
    w.append("Retry-After: ");
    w.append_uint(seconds);
    w.append("\r\n");
    return w.overflow() ? std::string_view{} : w.view();
}

Decision respond(uint16_t status, std::string_view reason, std::string_view extra = {}) noexcept {
    Decision d;
    d.step = Step::Respond;
    d.status = status;
    d.reason = reason;
    d.extra = extra;
    return d;
}

// Whether `uri` may carry URI headers (?Route=): only a SIP or SIPS URI has them (RFC 3261
// §19.1.1); "tel:+1555?Route=..." is no URI at all (found by fuzz_redirect), so a tel: contact
// registered through a Path is redirected to without its route.
bool has_uri_headers(std::string_view uri) noexcept {
    return base::iequals(uri.substr(0, 4), "sip:") || base::iequals(uri.substr(0, 5), "sips:");
}

bool is_hvalue_char(char c) noexcept {
    // RFC 3261 §25.1: hvalue = *( hnv-unreserved / unreserved / escaped )
    if (base::is_alnum(c)) return true;
    switch (c) {
        case '-':
        case '_':
        case '.':
        case '!':
        case '~':
        case '*':
        case '\'':
        case '(':
        case ')':
        case '[':
        case ']':
        case '/':
        case '?':
        case ':':
        case '+':
        case '$':
            return true;
        default:
            return false;
    }
}

}  // namespace

bool append_uri_header_escaped(base::BufferWriter& w, std::string_view value) noexcept {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char c : value) {
        if (is_hvalue_char(c)) {
            w.append(c);
        } else {
            auto u = static_cast<unsigned char>(c);
            char e[3] = {'%', kHex[u >> 4], kHex[u & 0xf]};
            w.append(std::string_view(e, 3));
        }
    }
    return !w.overflow();
}

Decision decide(const Config& config, std::string_view bytes, sip::Message& msg,
                sip::RequestCore& core, std::span<char, sip::kMaxAorLength> aor_buf,
                bool store_available, bool draining) noexcept {
    sip::IntakeResult in = sip::intake(bytes, config.max_message, config.max_headers, msg, core);
    if (in.action == sip::IntakeAction::Drop) {
        Decision d;
        d.drop = in.drop;
        return d;
    }
    if (in.action == sip::IntakeAction::Respond) return respond(in.status, in.reason);

    const sip::Uri& ruri = core.request_uri;
    switch (msg.method) {
        case sip::Method::Ack: {
            Decision d;
            d.step = Step::Absorb;
            return d;
        }
        case sip::Method::Cancel:
            // The INVITE was answered at once and finally; 200 stops the CANCEL's retransmissions
            // (RFC 3261 §8.3 asks a redirect server for a 2xx here).
            return respond(200, "OK");
        case sip::Method::Register:
            return respond(405, "Method Not Allowed", kAllow);
        case sip::Method::Options:
            if (core.request_uri_status == sip::UriStatus::Ok && ruri.scheme != sip::Scheme::Tel &&
                ruri.user.empty()) {
                // Addressed to the server: the load balancer's health probe. Require applies to
                // requests we answer ourselves (RFC 3261 §8.2.2.3): 420, listed by the caller.
                if (!sip::option_tags_valid(msg, sip::HeaderId::Require))
                    return respond(400, "Malformed Require Header");
                if (msg.find(sip::HeaderId::Require) != nullptr)
                    return respond(420, "Bad Extension");
                // Draining: the balancer is to take us out before we stop; requests that still
                // arrive meanwhile are answered as usual below.
                if (!draining && (store_available || config.health_ignores_redis))
                    return respond(200, "OK", kAllow);
                // The Retry-After line goes into the caller's AOR buffer, unused by this answer.
                return respond(503, "Service Unavailable",
                               retry_after(config.retry_after_s, aor_buf));
            }
            break;
        default:
            break;
    }

    if (core.has_max_forwards && core.max_forwards == 0 && config.reject_max_forwards_zero)
        return respond(483, "Too Many Hops");
    if (core.request_uri_status == sip::UriStatus::UnsupportedScheme)
        return respond(416, "Unsupported URI Scheme");

    std::size_t len = 0;
    switch (sip::normalize_aor(ruri, config.default_domain, aor_buf, len)) {
        case sip::AorStatus::Ok:
            break;
        case sip::AorStatus::BadEscape:
            return respond(400, "Malformed Request-URI");
        case sip::AorStatus::UnsupportedScheme:
            return respond(416, "Unsupported URI Scheme");
        default:  // no user part, no default domain for tel:, too long: nobody to redirect to
            return respond(404, "Not Found");
    }
    std::string_view aor(aor_buf.data(), len);
    std::string_view host = aor.substr(aor.rfind('@') + 1);  // the user may hold an escaped '@'
    if (!sip::serves_domain(config.domains, host)) return respond(404, "Not Found");

    Decision d;
    d.step = Step::Lookup;
    d.aor = aor;
    return d;
}

WriteResult write_redirect(const Config& config, const sip::Message& msg,
                           const sip::RequestCore& core, const LookupOutcome& found,
                           const sip::Source& source, std::size_t limit,
                           std::span<char> out) noexcept {
    WriteResult res;
    std::span<char> buf = out.first(std::min(limit, out.size()));
    char retry_buf[32];
    const std::string_view retry = retry_after(config.retry_after_s, retry_buf);
    if (found.error != StoreError::None) {
        // Never 404 for a store we could not ask (DESIGN §4).
        res.status = 503;
        res.response = sip::write_response(msg, core, 503, "Service Unavailable", retry,
                                           config.tag_key, buf, source);
        return res;
    }

    // Live candidates, ordered highest q first, then most recently registered.
    std::array<const BindingView*, kMaxCandidates> cand;
    std::size_t n = 0;
    std::size_t skipped = 0;
    for (const BindingView& b : found.bindings) {
        if (b.expires_at_ms <= found.now_ms) continue;  // expired since the store filtered
        if (sip::uri_equivalent(b.contact, msg.request_uri)) continue;  // loop guard
        if (n == cand.size()) {
            ++skipped;
            continue;
        }
        cand[n++] = &b;
    }
    std::sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(n),
              [](const BindingView* a, const BindingView* b) {
                  if (a->q != b->q) return a->q > b->q;
                  return a->updated_at_ms > b->updated_at_ms;
              });
    // Deduplicate (the first, best one of equal contacts stays).
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i) {
        bool dup = false;
        for (std::size_t j = 0; j < kept && !dup; ++j)
            dup = sip::uri_equivalent(cand[j]->contact, cand[i]->contact);
        if (!dup) cand[kept++] = cand[i];
    }
    n = kept;

    if (n == 0) {
        res.status = 404;
        res.response =
            sip::write_response(msg, core, 404, "Not Found", {}, config.tag_key, buf, source);
        return res;
    }

    sip::ResponseWriter w(buf);
    w.begin(msg, core, 302, "Moved Temporarily", config.tag_key, source);
    base::BufferWriter& bw = w.writer();
    for (std::size_t i = 0; i < n; ++i) {
        const BindingView& b = *cand[i];
        std::size_t mark = bw.size();
        int64_t left_ms = b.expires_at_ms - found.now_ms;
        bw.append("Contact: <");
        bw.append(b.contact);
        if (config.path_as_route && !b.path.empty() && has_uri_headers(b.contact)) {
            // RFC 3327 §5: a redirect target registered through a Path keeps it as its route.
            bw.append(b.contact.find('?') == std::string_view::npos ? "?Route=" : "&Route=");
            (void)append_uri_header_escaped(bw, b.path);
        }
        bw.append(">;q=");
        sip::append_q(bw, b.q);
        bw.append(";expires=");
        bw.append_uint(static_cast<uint64_t>((left_ms + 999) / 1000));
        bw.append("\r\n");
        if (bw.overflow() || bw.size() + kTail.size() > bw.capacity()) {
            bw.truncate(mark);
            res.cut = n - i;
            break;
        }
        ++res.contacts;
    }
    res.cut += skipped;
    if (res.contacts == 0) {
        // Not even one contact fits the datagram: nothing useful to redirect to.
        res.status = 480;
        res.response = sip::write_response(msg, core, 480, "Temporarily Unavailable", retry,
                                           config.tag_key, buf, source);
        return res;
    }
    res.status = 302;
    res.response = w.finish();
    return res;
}

struct Redirector::Slot {
    std::vector<char> buf;
    std::unique_ptr<sip::Message> msg = std::make_unique<sip::Message>();
    sip::RequestCore core;
    sip::Peer peer;
    std::size_t limit = 0;  // the largest answer this request may get
    std::array<char, sip::kMaxAorLength> aor{};
    uint64_t started_us = 0;
    Redirector* owner = nullptr;
};

Redirector::Redirector(Config config, location::LookupStore& store, sip::Sender& sender,
                       sip::MessageStats& messages, RedirectStats& stats,
                       uint64_t (*now_us)() noexcept, int64_t (*wall_ms)() noexcept)
    : config_(std::move(config)),
      store_(store),
      sender_(sender),
      messages_(messages),
      stats_(stats),
      now_us_(now_us),
      wall_ms_(wall_ms),
      scratch_(std::make_unique<Slot>()),
      out_(std::max({config_.max_response, config_.max_response_stream, std::size_t{512}})) {
    scratch_->buf.resize(config_.max_message);
    scratch_->owner = this;
}

Redirector::~Redirector() = default;

Redirector::Slot* Redirector::acquire() noexcept {
    if (slots_.in_use() >= config_.max_inflight) return nullptr;
    // Slots are made on first need and then reused: the steady state allocates nothing.
    Slot* s = slots_.acquire();
    if (s->owner == nullptr) {  // made just now
        s->buf.resize(config_.max_message);
        s->owner = this;
    }
    return s;
}

void Redirector::release(Slot* slot) noexcept {
    if (slot != scratch_.get()) slots_.release(slot);
}

void Redirector::send(const Slot& slot, std::string_view bytes, uint16_t status) noexcept {
    if (bytes.empty()) {
        // Not even the bare answer fits (a request whose Vias alone exceed the limit).
        messages_.drop(base::DropReason::ResponseTooLarge);
        return;
    }
    if (sender_.send(bytes, slot.peer, sip::response_port(slot.core.top_via, slot.peer.port)))
        messages_.response(status);
    else
        messages_.drop(base::DropReason::SendFailed);
}

void Redirector::respond(Slot& slot, uint16_t status, std::string_view reason,
                         std::string_view extra) noexcept {
    char unsupported[512];
    char retry_buf[32];
    if (status == 503 && extra.empty()) extra = retry_after(config_.retry_after_s, retry_buf);
    if (status == 420) {
        // Unsupported lists every option tag of Require (RFC 3261 §8.2.2.3): we support none.
        base::BufferWriter uw(unsupported);
        uw.append("Unsupported: ");
        bool first = true;
        const sip::Message& m = *slot.msg;
        for (std::size_t i = 0; i < m.header_count; ++i) {
            if (m.headers[i].id != sip::HeaderId::Require) continue;
            if (!first) uw.append(", ");
            uw.append(m.headers[i].value);
            first = false;
        }
        uw.append("\r\n");
        if (!uw.overflow()) extra = uw.view();
    }
    std::span<char> buf = sip::response_buffer(sender_, out_, out_.size());
    buf = buf.first(std::min(buf.size(), slot.limit));  // the amplification guard's bound
    std::string_view out = sip::write_response(*slot.msg, slot.core, status, reason, extra,
                                               config_.tag_key, buf, slot.peer.source());
    send(slot, out, status);
}

std::size_t Redirector::response_limit(std::size_t request_size, bool trusted,
                                       sip::Transport transport) const noexcept {
    // RFC 3261 §18.1.1: the datagram limit is for UDP; a stream carries the whole contact list.
    if (transport != sip::Transport::Udp) return config_.max_response_stream;
    std::size_t limit = std::max<std::size_t>(config_.max_response, 512);
    if (trusted || config_.max_amplification <= 0) return limit;
    // A spoofed source turns every answer into traffic aimed at a victim; bounding the ratio
    // makes the server useless as an amplifier. The default 3 is QUIC's anti-amplification limit
    // for an unvalidated address (RFC 9000 §8.1). Over UDP only: a TCP handshake validates the
    // source.
    const double amplified = static_cast<double>(request_size) * config_.max_amplification;
    return amplified < static_cast<double>(limit) ? static_cast<std::size_t>(amplified) : limit;
}

bool Redirector::on_datagram(std::string_view bytes, const sip::Peer& from, bool trusted) noexcept {
    Slot* slot = acquire();
    bool busy = slot == nullptr;
    if (busy) slot = scratch_.get();
    slot->peer = from;
    slot->limit = response_limit(bytes.size(), trusted, from.transport);
    // Copy the datagram once into the slot (STYLE.md): every view of the request points there and
    // stays valid until the look-up answers. One over the size limit is judged in place: it can
    // only be answered 513 or dropped, now.
    std::string_view view = bytes;
    if (bytes.size() <= slot->buf.size()) {
        std::memcpy(slot->buf.data(), bytes.data(), bytes.size());
        view = std::string_view(slot->buf.data(), bytes.size());
    }
    Decision d =
        decide(config_, view, *slot->msg, slot->core, slot->aor, store_.available(), draining_);
    if (d.step != Step::Drop) messages_.request(slot->msg->method);
    switch (d.step) {
        case Step::Drop:
            messages_.drop(d.drop);
            break;
        case Step::Absorb:
            break;
        case Step::Respond:
            respond(*slot, d.status, d.reason, d.extra);
            break;
        case Step::Lookup: {
            if (busy) {
                // DESIGN §4 overload: beyond --max-inflight answer 503 at once, never queue.
                stats_.redis_error(base::RedisErrorKind::Overloaded);
                respond(*slot, 503, "Service Unavailable", {});
                break;
            }
            slot->started_us = now_us_();
            // Counted in flight before the call: a near-cache hit answers (finish()) before
            // lookup() returns.
            ++inflight_;
            stats_.inflight_lookups.add(1);
            pending_slot_ = slot;
            StoreError err = store_.lookup(d.aor, &Redirector::on_lookup, slot);
            // finish() releases the slot (and may have, answering from the near-cache already).
            const bool answered = pending_slot_ == nullptr;
            pending_slot_ = nullptr;
            if (err == StoreError::None) return !answered;
            --inflight_;
            stats_.inflight_lookups.add(-1);
            stats_.redis_error(location::redis_error_kind(err));
            respond(*slot, 503, "Service Unavailable", {});
            break;
        }
    }
    release(slot);
    return false;
}

bool Redirector::reject(std::string_view head, const sip::Peer& from, uint16_t status,
                        std::string_view reason) noexcept {
    Slot& slot = *scratch_;
    slot.peer = from;
    slot.limit = response_limit(head.size(), false, from.transport);
    if (head.size() > slot.buf.size()) return false;
    std::memcpy(slot.buf.data(), head.data(), head.size());
    const std::string_view view(slot.buf.data(), head.size());
    sip::ParseLimits limits;
    limits.max_headers = config_.max_headers;
    const sip::ParseStatus st = sip::parse_message(view, *slot.msg, limits);
    if (st == sip::ParseStatus::Malformed || st == sip::ParseStatus::TooLarge ||
        !slot.msg->is_request)
        return false;
    if (sip::fault_is_unanswerable(sip::parse_request_core(*slot.msg, st, slot.core))) return false;
    messages_.request(slot.msg->method);
    respond(slot, status, reason, {});
    return true;
}

void Redirector::on_lookup(void* ctx, const location::LookupReply& reply) noexcept {
    auto* slot = static_cast<Slot*>(ctx);
    slot->owner->finish(slot, reply);
}

void Redirector::finish(Slot* slot, const location::LookupReply& reply) noexcept {
    if (slot == pending_slot_) pending_slot_ = nullptr;  // answered within lookup()
    --inflight_;
    stats_.inflight_lookups.add(-1);
    if (!reply.from_cache) {  // sipr_lookup_duration_seconds is the latency of Redis
        uint64_t now = now_us_();
        stats_.lookup_duration.observe_us(now >= slot->started_us ? now - slot->started_us : 0);
    }
    stats_.garbage_bindings.inc(reply.garbage);
    if (reply.error != StoreError::None)
        stats_.redis_error(location::redis_error_kind(reply.error));
    LookupOutcome found{reply.error, reply.bindings, wall_ms_()};
    WriteResult res = write_redirect(config_, *slot->msg, slot->core, found, slot->peer.source(),
                                     slot->peer.transport == sip::Transport::Udp
                                         ? std::min(config_.max_response, slot->limit)
                                         : slot->limit,
                                     sip::response_buffer(sender_, out_, out_.size()));
    if (res.cut != 0) stats_.contacts_cut.inc(res.cut);
    send(*slot, res.response, res.status);
    release(slot);
}

}  // namespace sipr::redirect
