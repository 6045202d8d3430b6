// libFuzzer target: one datagram through the whole registrar (registrar::Registrar, DESIGN §5,
// RFC 3261 §10.3) with a fake RegisterStore that applies each REGISTER as register.lua does
// (pruning, CSeq order, --max-contacts reject/evict) on bindings the input's script seeds. The
// datagram is handed over 1-3 times (retransmissions), from a heap copy freed as soon as
// on_datagram returns; the store answers later, in order or not, from views freed as soon as the
// callback returns.
//
// Checked: what the registrar asks the store to write is what §10.3 allows (the To AOR, the
// request's Call-ID and CSeq, expiries 0 or within [--min-expires, --max-expires], every new
// binding's packed form readable by the redirect server's reader, a wildcard only alone); every
// response parses as a SIP response to this request within 65,000 bytes; a 200 lists at most
// --max-contacts bindings, each with ;expires=, and a Date; nothing stays pending.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../unit/support/register_model.h"
#include "fuzz_service.h"
#include "sipr/location/binding.h"
#include "sipr/registrar/registrar.h"
#include "sipr/sip/aor.h"
#include "sipr/sip/uri.h"

namespace {

using namespace sipr;
using location::StoreError;
using sipr::fuzz::pick;

constexpr int64_t kNowMs = 1'700'000'000'000;
constexpr std::size_t kMaxResponse = 65000;

// register.lua's C++ model (tests/unit/support/register_model.h, checked against the real script
// by tests/unit/location/register_script_test.cpp): one hash of packed bindings per AOR.
class FakeStore final : public location::RegisterStore {
  public:
    struct Pending {
        location::RegisterChanges changes;
        location::RegisterCallback cb = nullptr;
        void* ctx = nullptr;
    };

    bool up = true;
    StoreError refuse = StoreError::None;  // returned at the call: no callback
    StoreError fail = StoreError::None;    // given to the callback, nothing applied
    std::vector<std::string> seed;         // packed bindings every AOR starts with
    std::map<std::string, test::RegisterTable> db;
    std::vector<Pending> pending;
    std::vector<location::RegisterChanges> seen;

    StoreError apply_register(const location::RegisterChanges& ch, location::RegisterCallback cb,
                              void* ctx) noexcept override {
        SIPR_FUZZ_CHECK(cb != nullptr);
        seen.push_back(ch);
        if (refuse != StoreError::None) return refuse;
        pending.push_back(Pending{ch, cb, ctx});
        return StoreError::None;
    }
    [[nodiscard]] bool available() const noexcept override { return up; }

    [[nodiscard]] bool idle() const noexcept { return pending.empty(); }

    // Answers one pending REGISTER.
    void answer(bool last) {
        std::size_t i = last ? pending.size() - 1 : 0;
        Pending p = std::move(pending[i]);
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
        location::RegisterReply reply;
        reply.now_ms = kNowMs;
        test::RegisterTable after;
        reply.error = fail != StoreError::None ? fail : apply(p.changes, after);
        auto packed = std::make_unique<std::vector<std::string>>();
        std::vector<location::BindingView> views;
        if (reply.error == StoreError::None) {
            for (const auto& kv : after) packed->push_back(kv.second);
            views.resize(packed->size());
            for (std::size_t k = 0; k < packed->size(); ++k)
                SIPR_FUZZ_CHECK(location::unpack_binding((*packed)[k], views[k]));
            reply.bindings = views;
        }
        p.cb(p.ctx, reply);
    }

  private:
    StoreError apply(const location::RegisterChanges& ch, test::RegisterTable& after) {
        auto [it, fresh] = db.try_emplace(ch.aor);
        test::RegisterTable& table = it->second;
        if (fresh)
            for (std::size_t i = 0; i < seed.size(); ++i)
                table["seed-" + std::to_string(i)] = seed[i];
        return test::apply_register_model(table, ch, kNowMs, after);
    }
};

struct Run {
    registrar::Config config;
    FakeStore store;
    int repeats = 1;
    int order = 0;  // 0: answer after each datagram, 1: after all, in order, 2: after all, reversed
    bool v6 = false;
    std::size_t sender_buffer = 0;
};

void make_run(Run& r, std::string_view script) {
    FuzzedDataProvider fdp(reinterpret_cast<const uint8_t*>(script.data()), script.size());
    registrar::Config& c = r.config;
    c.tag_key = fuzz::kTagKey;
    if (fdp.ConsumeBool()) c.domains = {"example.com", "biloxi.com"};
    // The flag checks of sip-registrard: min <= default <= max.
    c.min_expires = pick<uint32_t>(fdp, {60, 0, 1, 3600});
    c.max_expires = std::max(c.min_expires, pick<uint32_t>(fdp, {3600, 60, 86400, 0xffffffffu}));
    c.default_expires =
        std::clamp(pick<uint32_t>(fdp, {3600, 60, 7200}), c.min_expires, c.max_expires);
    c.max_contacts = pick<uint32_t>(fdp, {10, 1, 2, 3});
    c.evict_oldest = fdp.ConsumeBool();
    c.retry_after_s = fdp.ConsumeIntegral<uint32_t>();
    c.max_message = pick<std::size_t>(fdp, {8192, 1024, 1300, 65535});
    c.max_headers = pick<std::size_t>(fdp, {96, 6, 32, 128});
    c.max_pending = pick<std::size_t>(fdp, {4096, 1, 2});
    r.store.up = !fdp.ConsumeBool();
    r.store.refuse = pick(fdp, {StoreError::None, StoreError::Unavailable, StoreError::Overloaded,
                                StoreError::Timeout});
    r.store.fail =
        pick(fdp, {StoreError::None, StoreError::Timeout, StoreError::Protocol,
                   StoreError::Unavailable, StoreError::Stale, StoreError::TooManyContacts});
    r.repeats = fdp.ConsumeIntegralInRange(1, 3);
    r.order = fdp.ConsumeIntegralInRange(0, 2);
    r.v6 = fdp.ConsumeBool();
    r.sender_buffer = pick<std::size_t>(fdp, {0, 65536, 256});
    // Bytes that once fed a credentials fake: still consumed, so the corpus keeps its meaning.
    (void)fdp.ConsumeBool();
    (void)fdp.ConsumeBool();
    (void)fdp.ConsumeRandomLengthString(40);
    (void)fdp.ConsumeRandomLengthString(70);

    // Bindings the AOR already has (at most --max-contacts, as the script keeps it).
    std::size_t n = fdp.ConsumeIntegralInRange<std::size_t>(0, c.max_contacts);
    for (std::size_t i = 0; i < n; ++i) {
        location::Binding b;
        b.contact = fuzz::storable_contact(fdp.ConsumeRandomLengthString(60));
        if (b.contact.empty()) b.contact = "sip:alice@192.0.2.1" + std::to_string(i);
        b.q = fdp.ConsumeIntegralInRange<uint16_t>(0, 1000);
        b.expires_at_ms = kNowMs + fdp.ConsumeIntegralInRange<int64_t>(-2'000, 400'000'000);
        b.updated_at_ms = kNowMs - fdp.ConsumeIntegralInRange<int64_t>(0, 1'000'000);
        b.cseq = fdp.ConsumeIntegral<uint32_t>() & 0x7fffffff;
        b.call_id = fdp.ConsumeBool() ? std::string("a84b4c76e66710@pc33.atlanta.com")
                                      : fdp.ConsumeRandomLengthString(24);
        b.received = "192.0.2.1:5060";
        if (fdp.ConsumeBool()) b.instance = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";
        b.has_reg_id = fdp.ConsumeBool();
        b.reg_id = fdp.ConsumeIntegralInRange<uint32_t>(1, 0x7fffffff);  // RFC 5626 §4.1
        r.store.seed.push_back(location::pack_binding(b));
    }
}

// What the registrar may ask the store to write for this request (RFC 3261 §10.3).
void check_changes(const Run& r, const fuzz::Expected& req, const location::RegisterChanges& ch) {
    const registrar::Config& c = r.config;
    SIPR_FUZZ_CHECK(req.proceeds() && req.msg->method == sip::Method::Register);
    // Step 5: the AOR is the To URI, normalised (DESIGN §4: the user part un-escaped, so the AOR
    // is a key, not always a URI again).
    SIPR_FUZZ_CHECK(!ch.aor.empty() && ch.aor.size() <= sip::kMaxAorLength);
    SIPR_FUZZ_CHECK(ch.aor.starts_with("sip:") || ch.aor.starts_with("sips:"));
    std::array<char, sip::kMaxAorLength> want{};
    std::size_t len = 0;
    SIPR_FUZZ_CHECK(sip::normalize_aor(req.core.to.addr.uri, req.core.request_uri.host, want,
                                       len) == sip::AorStatus::Ok);
    SIPR_FUZZ_CHECK(std::string_view(want.data(), len) == ch.aor);
    SIPR_FUZZ_CHECK(ch.call_id == req.core.call_id && ch.cseq == req.core.cseq.number);
    SIPR_FUZZ_CHECK(ch.max_contacts == c.max_contacts && ch.evict_oldest == c.evict_oldest);
    // Step 6: a wildcard only alone.
    std::size_t contacts = req.msg->count(sip::HeaderId::Contact);
    if (ch.remove_all) SIPR_FUZZ_CHECK(ch.contacts.empty() && contacts == 1);
    SIPR_FUZZ_CHECK(ch.contacts.size() <= contacts);
    for (const location::ContactChange& cc : ch.contacts) {
        SIPR_FUZZ_CHECK(!cc.key.empty());
        // Steps 6-7: 0 removes; otherwise within the configured bounds (423 below, clamp above).
        SIPR_FUZZ_CHECK(cc.expires_s <= c.max_expires);
        SIPR_FUZZ_CHECK(cc.expires_s == 0 || cc.expires_s >= c.min_expires);
        if (cc.expires_s == 0) continue;
        // The binding the script will store must be readable by the redirect server's reader.
        std::string packed = "1";
        packed += location::kFieldSep;
        packed += std::to_string(kNowMs + static_cast<int64_t>(cc.expires_s) * 1000);
        packed += location::kFieldSep;
        packed += std::to_string(kNowMs);
        packed += location::kFieldSep;
        packed += cc.tail;
        location::BindingView b;
        SIPR_FUZZ_CHECK(location::unpack_binding(packed, b));
        SIPR_FUZZ_CHECK(b.call_id == req.core.call_id && b.cseq == req.core.cseq.number);
        SIPR_FUZZ_CHECK(b.q <= 1000);
        SIPR_FUZZ_CHECK(fuzz::storable_contact(b.contact) == b.contact);
    }
}

void check_200(const Run& r, const sip::Message& m) {
    std::vector<sip::Contact> contacts = fuzz::response_contacts(m);
    SIPR_FUZZ_CHECK(contacts.size() <= r.config.max_contacts);
    // Remaining seconds: at most --max-expires for this REGISTER's bindings, at most the seeded
    // 400,000 s for older ones.
    for (const sip::Contact& c : contacts)
        SIPR_FUZZ_CHECK(c.expires <= std::max<uint32_t>(r.config.max_expires, 400'000));
    SIPR_FUZZ_CHECK(m.count(sip::HeaderId::Date) == 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const fuzz::Input in = fuzz::split_input(fuzz::as_text(data, size));
    Run r;
    make_run(r, in.script);
    const fuzz::Expected req(in.datagram, r.config.max_message, r.config.max_headers);
    const sip::Peer peer = fuzz::make_peer(r.v6);
    fuzz::RecordingSender sender(req, peer, kMaxResponse, r.sender_buffer);
    sip::MessageStats messages;
    registrar::RegistrarStats stats;
    {
        registrar::Registrar reg(r.config, r.store, sender, messages, stats);
        for (int i = 0; i < r.repeats; ++i) {
            // A heap copy that dies when on_datagram returns, like a libuv receive buffer.
            auto copy = std::make_unique<char[]>(in.datagram.size() + 1);
            std::memcpy(copy.get(), in.datagram.data(), in.datagram.size());
            reg.on_datagram(std::string_view(copy.get(), in.datagram.size()), peer);
            copy.reset();
            if (r.order == 0)
                while (!r.store.idle()) r.store.answer(false);
        }
        while (!r.store.idle()) r.store.answer(r.order == 2);
        SIPR_FUZZ_CHECK(reg.pending() == 0);
    }

    for (const location::RegisterChanges& ch : r.store.seen) check_changes(r, req, ch);
    SIPR_FUZZ_CHECK(sender.sent.size() <= static_cast<std::size_t>(r.repeats));
    if (req.intake.action == sip::IntakeAction::Drop ||
        (req.proceeds() && req.msg->method == sip::Method::Ack))
        SIPR_FUZZ_CHECK(sender.sent.empty());
    if (!req.proceeds()) {
        SIPR_FUZZ_CHECK(r.store.seen.empty());
        return 0;
    }
    const bool is_register = req.msg->method == sip::Method::Register;
    for (const auto& s : sender.sent) {
        const sip::Message& m = *s->msg;
        switch (m.status_code) {
            case 200:
                if (is_register) {
                    SIPR_FUZZ_CHECK(!r.store.seen.empty());
                    check_200(r, m);
                }
                break;
            case 401:
            case 403:
            case 500:
                SIPR_FUZZ_CHECK(is_register);
                break;
            case 423: {
                SIPR_FUZZ_CHECK(is_register && r.config.min_expires > 1);
                const sip::Header* h = m.find("Min-Expires");
                SIPR_FUZZ_CHECK(h != nullptr && h->value == std::to_string(r.config.min_expires));
                break;
            }
            case 503:
                SIPR_FUZZ_CHECK(!r.store.up || r.store.refuse != StoreError::None ||
                                r.store.fail != StoreError::None ||
                                r.config.max_pending < static_cast<std::size_t>(r.repeats));
                break;
            case 400:
            case 404:
            case 405:
            case 416:
            case 420:
                break;
            default:
                SIPR_FUZZ_CHECK(false && "a status the registrar never sends");
        }
    }
    // Every request that passes intake is answered (ACK excepted), unless even the bare answer is
    // over the 65,000 bytes of a datagram (only a request near the 65,535-byte limit gets there).
    if (req.msg->method != sip::Method::Ack && sender.sent.empty())
        SIPR_FUZZ_CHECK(in.datagram.size() > 60000);
    return 0;
}
