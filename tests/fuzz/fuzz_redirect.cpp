// libFuzzer target: one datagram through the whole redirect service (redirect::Redirector, DESIGN
// §4) with a fake LookupStore whose bindings, errors and timing come from the input's script
// (fuzz_service.h). The datagram is handed over 1-3 times (retransmissions, several look-ups in
// flight), from a heap copy freed as soon as on_datagram returns, and the store answers later, in
// order or not, or at once inside lookup() (a near-cache hit), from views freed as soon as the
// callback returns: ASan sees any view kept too long.
//
// Every response must parse as a SIP response to this request (Vias, Call-ID, CSeq, tagged To, RFC
// 3261 §18.2.2 port) within --max-response; a 302 lists only live bindings of the store, each once,
// never the Request-URI, highest q first, each with ;q= and ;expires=; 404 only when no such
// binding exists; 503 only for a store error, overload or a down health probe; ACK is never
// answered; every look-up is answered and nothing stays in flight.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_service.h"
#include "sipr/location/binding.h"
#include "sipr/redirect/redirect.h"
#include "sipr/sip/aor.h"
#include "sipr/sip/uri.h"

namespace {

using namespace sipr;
using location::StoreError;
using sipr::fuzz::pick;

constexpr int64_t kNowMs = 1'700'000'000'000;
int64_t wall_ms() noexcept {
    return kNowMs;
}
uint64_t mono_us() noexcept {
    static uint64_t t = 0;
    return t += 7;
}

// Contacts a registrar could have stored (and the harness picks the Request-URI itself too).
constexpr std::string_view kContacts[] = {
    "sip:alice@192.0.2.10:5060",
    "sip:alice@192.0.2.10:5060;transport=udp",
    "SIP:alice@192.0.2.10:5060",
    "sip:alice@[2001:db8::10]:5070;transport=udp;ob",
    "sips:alice@pc33.example.com",
    "sip:%61lice@192.0.2.10:5060",
    "sip:+15551234567@gw.example.net;user=phone",
    "sip:alice@192.0.2.11?Subject=hi&Priority=urgent",
    "tel:+15551234567",
    "sip:bob@example.com",
    "mailto:alice@example.com",
};

class FakeStore final : public location::LookupStore {
  public:
    struct Pending {
        std::string aor;
        location::LookupCallback cb = nullptr;
        void* ctx = nullptr;
    };

    bool up = true;
    StoreError refuse = StoreError::None;  // returned at the call: no callback
    StoreError fail = StoreError::None;    // given to the callback
    std::vector<std::string> packed;       // the AOR's hash values, as HGETALL returns them
    std::vector<Pending> pending;
    std::size_t lookups = 0;
    bool sync = false;  // answer inside lookup(), as a near-cache hit does

    StoreError lookup(std::string_view aor, location::LookupCallback cb,
                      void* ctx) noexcept override {
        SIPR_FUZZ_CHECK(cb != nullptr);
        SIPR_FUZZ_CHECK(!aor.empty() && aor.size() <= sip::kMaxAorLength);
        SIPR_FUZZ_CHECK(aor.starts_with("sip:") || aor.starts_with("sips:"));
        ++lookups;
        if (refuse != StoreError::None) return refuse;
        pending.push_back(Pending{std::string(aor), cb, ctx});
        if (sync) answer(pending.size() - 1);
        return StoreError::None;
    }
    [[nodiscard]] bool available() const noexcept override { return up; }

    // Answers one pending look-up as RedisStore does: unpacks the values, drops garbage and
    // expired ones; the views die when the callback returns.
    void answer(std::size_t i) {
        Pending p = pending[i];
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
        auto copies = std::make_unique<std::vector<std::string>>(packed);
        std::vector<location::BindingView> views;
        location::LookupReply reply;
        reply.error = fail;
        if (fail == StoreError::None) {
            for (const std::string& s : *copies) {
                location::BindingView v;
                if (!location::unpack_binding(s, v))
                    ++reply.garbage;
                else if (v.expires_at_ms > kNowMs)
                    views.push_back(v);
            }
            reply.bindings = views;
        }
        p.cb(p.ctx, reply);
    }
};

struct Run {
    redirect::Config config;
    FakeStore store;
    std::vector<location::Binding> bindings;  // what the store holds, for the checks
    int repeats = 1;
    // 0: answer after each datagram, 1: after all, in order, 2: after all, reversed, 3: at once,
    // inside lookup()
    int order = 0;
    bool v6 = false;
    std::size_t sender_buffer = 0;
};

void make_run(Run& r, std::string_view script, std::string_view request_uri) {
    FuzzedDataProvider fdp(reinterpret_cast<const uint8_t*>(script.data()), script.size());
    redirect::Config& c = r.config;
    c.tag_key = fuzz::kTagKey;
    if (fdp.ConsumeBool()) c.domains = {"example.com", "example.net"};
    c.default_domain = pick<const char*>(fdp, {"example.com", "", "EXAMPLE.net"});
    c.path_as_route = fdp.ConsumeBool();
    c.reject_max_forwards_zero = !fdp.ConsumeBool();
    c.health_ignores_redis = fdp.ConsumeBool();
    c.max_response = pick<std::size_t>(fdp, {1300, 512, 700, 4000, 65000});
    c.max_message = pick<std::size_t>(fdp, {8192, 1024, 1300, 65535});
    c.max_headers = pick<std::size_t>(fdp, {96, 6, 32, 128});
    c.max_inflight = pick<std::size_t>(fdp, {1024, 1, 2});
    c.retry_after_s = fdp.ConsumeIntegral<uint32_t>();
    r.store.up = !fdp.ConsumeBool();
    r.store.refuse = pick(fdp, {StoreError::None, StoreError::Unavailable, StoreError::Overloaded,
                                StoreError::Timeout});
    r.store.fail = pick(fdp, {StoreError::None, StoreError::Timeout, StoreError::Protocol,
                              StoreError::Unavailable, StoreError::Overloaded});
    r.repeats = fdp.ConsumeIntegralInRange(1, 3);
    r.order = fdp.ConsumeIntegralInRange(0, 3);
    r.store.sync = r.order == 3;
    r.v6 = fdp.ConsumeBool();
    r.sender_buffer = pick<std::size_t>(fdp, {0, 65536, 256});

    // Without a script: two live bindings, so a seed INVITE gets its 302.
    std::size_t n = script.empty() ? 2 : fdp.ConsumeIntegralInRange<std::size_t>(0, 40);
    if (fdp.ConsumeIntegralInRange(0, 15) == 15) n = 300;  // beyond the 256 candidates
    for (std::size_t i = 0; i < n; ++i) {
        location::Binding b;
        switch (fdp.ConsumeIntegralInRange(0, 4)) {
            case 0:
                b.contact = kContacts[i % std::size(kContacts)];
                break;
            case 1:
                b.contact = std::string(request_uri);
                break;  // the loop guard
            case 2:
                b.contact = fuzz::storable_contact(fdp.ConsumeRandomLengthString(80));
                break;
            case 3:
                b.contact = r.bindings.empty() ? "sip:x@h" : r.bindings.back().contact;
                break;
            default:
                b.contact = pick<std::string_view>(fdp, {kContacts[0], kContacts[3], kContacts[6]});
                break;
        }
        if (b.contact.empty()) b.contact = "sip:fallback@192.0.2.99";
        b.q = fdp.ConsumeIntegralInRange<uint16_t>(0, 1000);
        b.expires_at_ms =
            kNowMs +
            (script.empty() ? 3'600'000 : fdp.ConsumeIntegralInRange<int64_t>(-2'000, 400'000'000));
        b.updated_at_ms = kNowMs - fdp.ConsumeIntegralInRange<int64_t>(0, 1'000'000);
        b.cseq = fdp.ConsumeIntegral<uint32_t>() & 0x7fffffff;
        b.call_id = fdp.ConsumeRandomLengthString(24);
        if (fdp.ConsumeBool()) b.path = fdp.ConsumeRandomLengthString(120);
        b.received = "192.0.2.10:5060";
        b.user_agent = fdp.ConsumeRandomLengthString(16);
        if (fdp.ConsumeBool()) b.instance = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";
        b.has_reg_id = fdp.ConsumeBool();
        b.reg_id = fdp.ConsumeIntegralInRange<uint32_t>(1, 0x7fffffff);  // RFC 5626 §4.1
        r.store.packed.push_back(location::pack_binding(b));
        r.bindings.push_back(std::move(b));
    }
    // Now and then a value that is not a binding at all (counted as garbage, never fatal).
    if (fdp.ConsumeBool()) r.store.packed.push_back(fdp.ConsumeRandomLengthString(40));
}

// True when `written` (a Contact URI as the 302 wrote it) names binding `b`: its contact as
// stored, or, with --path-as-route and a Path, that contact with ?Route= (&Route= after its own
// headers) appended.
bool names(std::string_view written, const location::Binding& b, bool path_as_route) {
    if (written == b.contact) return true;
    if (!path_as_route || b.path.empty() || !written.starts_with(b.contact)) return false;
    std::string_view rest = written.substr(b.contact.size());
    return rest.starts_with(b.contact.find('?') == std::string::npos ? "?Route=" : "&Route=");
}

// The stored contact a written one stands for. An exact match wins: a stored contact may itself
// be another one plus URI headers ("sip:a@h?Subject=hi" next to "sip:a@h"; found by
// fuzz_redirect).
std::string_view stored_contact(std::string_view written, const Run& r) {
    for (const location::Binding& b : r.bindings)
        if (written == b.contact) return written;
    for (const location::Binding& b : r.bindings)
        if (names(written, b, r.config.path_as_route)) return b.contact;
    return written;
}

void check_302(const Run& r, const fuzz::Expected& req, const sip::Message& m) {
    std::vector<sip::Contact> contacts = fuzz::response_contacts(m);
    SIPR_FUZZ_CHECK(!contacts.empty());
    uint16_t last_q = 1000;
    for (std::size_t i = 0; i < contacts.size(); ++i) {
        const sip::Contact& c = contacts[i];
        SIPR_FUZZ_CHECK(c.has_q && c.q <= last_q);  // highest q first
        last_q = c.q;
        SIPR_FUZZ_CHECK(c.expires > 0);
        // A live binding of the store, with its q and at most its remaining seconds.
        bool found = false;
        for (const location::Binding& b : r.bindings) {
            if (!names(c.addr.uri_text, b, r.config.path_as_route) || b.q != c.q) continue;
            if (b.expires_at_ms <= kNowMs) continue;
            if (static_cast<int64_t>(c.expires) * 1000 - (b.expires_at_ms - kNowMs) >= 1000)
                continue;
            found = true;
            break;
        }
        SIPR_FUZZ_CHECK(found);
        // Never the Request-URI (loop guard), never twice.
        std::string_view bare = stored_contact(c.addr.uri_text, r);
        SIPR_FUZZ_CHECK(!sip::uri_equivalent(bare, req.msg->request_uri));
        for (std::size_t j = 0; j < i; ++j)
            SIPR_FUZZ_CHECK(
                !sip::uri_equivalent(bare, stored_contact(contacts[j].addr.uri_text, r)));
    }
}

// A live binding the 302 could list: not expired, not the Request-URI.
bool any_candidate(const Run& r, const fuzz::Expected& req) {
    for (const location::Binding& b : r.bindings)
        if (b.expires_at_ms > kNowMs && !sip::uri_equivalent(b.contact, req.msg->request_uri))
            return true;
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const fuzz::Input in = fuzz::split_input(fuzz::as_text(data, size));
    // The Request-URI as written, for loop-guard bindings.
    auto first = std::make_unique<sip::Message>();
    std::string_view ruri;
    if (sip::parse_message(in.datagram, *first) != sip::ParseStatus::Malformed && first->is_request)
        ruri = first->request_uri;

    Run r;
    make_run(r, in.script, ruri);
    const fuzz::Expected req(in.datagram, r.config.max_message, r.config.max_headers);
    const sip::Peer peer = fuzz::make_peer(r.v6);
    fuzz::RecordingSender sender(req, peer, r.config.max_response, r.sender_buffer);
    sip::MessageStats messages;
    redirect::RedirectStats stats;
    {
        redirect::Redirector red(r.config, r.store, sender, messages, stats, &mono_us, &wall_ms);
        for (int i = 0; i < r.repeats; ++i) {
            // A heap copy that dies when on_datagram returns, like a libuv receive buffer.
            auto copy = std::make_unique<char[]>(in.datagram.size() + 1);
            std::memcpy(copy.get(), in.datagram.data(), in.datagram.size());
            red.on_datagram(std::string_view(copy.get(), in.datagram.size()), peer);
            copy.reset();
            if (r.order == 0)
                while (!r.store.pending.empty()) r.store.answer(0);
        }
        while (!r.store.pending.empty())
            r.store.answer(r.order == 2 ? r.store.pending.size() - 1 : 0);
        SIPR_FUZZ_CHECK(red.inflight() == 0);
        // The stats stay consistent: no look-up is left counted as in flight.
        SIPR_FUZZ_CHECK(stats.inflight_lookups.get() == 0);
    }

    // At most one answer per datagram; ACK and unanswerable datagrams get none.
    SIPR_FUZZ_CHECK(sender.sent.size() <= static_cast<std::size_t>(r.repeats));
    if (req.intake.action == sip::IntakeAction::Drop ||
        (req.proceeds() && req.msg->method == sip::Method::Ack))
        SIPR_FUZZ_CHECK(sender.sent.empty());
    if (req.intake.action == sip::IntakeAction::Respond) {
        for (const auto& s : sender.sent) SIPR_FUZZ_CHECK(s->msg->status_code == req.intake.status);
    }
    if (!req.proceeds()) {
        SIPR_FUZZ_CHECK(r.store.lookups == 0);
        return 0;
    }
    const bool store_error = r.store.refuse != StoreError::None || r.store.fail != StoreError::None;
    for (const auto& s : sender.sent) {
        const sip::Message& m = *s->msg;
        switch (m.status_code) {
            case 302:
                SIPR_FUZZ_CHECK(r.store.lookups != 0);
                check_302(r, req, m);
                break;
            case 404:
                // Never for a store that could not be asked (DESIGN §4), never with a candidate.
                if (r.store.lookups != 0) {
                    SIPR_FUZZ_CHECK(!store_error);
                    SIPR_FUZZ_CHECK(!any_candidate(r, req));
                }
                break;
            case 503:
                SIPR_FUZZ_CHECK(store_error ||
                                r.config.max_inflight < static_cast<std::size_t>(r.repeats) ||
                                !r.store.up);
                break;
            case 480:  // candidates, but not one contact fits the datagram
                SIPR_FUZZ_CHECK(r.store.lookups != 0 && !store_error && any_candidate(r, req));
                break;
            case 200:
            case 400:
            case 405:
            case 416:
            case 420:
            case 483:
                SIPR_FUZZ_CHECK(r.store.lookups == 0);
                break;
            default:
                SIPR_FUZZ_CHECK(false && "a status the redirect server never sends");
        }
    }
    // Every request that passes intake gets an answer (ACK excepted), or a counted drop (the bare
    // answer does not fit the response limit).
    if (req.msg->method != sip::Method::Ack && sender.sent.empty()) {
        uint64_t drops = 0;
        for (const base::Counter& c : messages.dropped) drops += c.get();
        SIPR_FUZZ_CHECK(drops != 0);
    }
    return 0;
}
