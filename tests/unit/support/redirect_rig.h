#pragma once
// Shared by the redirect service's tests (decide_test, write_redirect_test, redirector_test):
// request builders, a response parser, bindings as a store hands them over, and the fakes the
// Redirector runs against (a LookupStore that keeps look-ups pending, a Sender, fake clocks).
// One place for the fakes, so a change of the store interfaces is one edit.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/base/buffer_writer.h"
#include "sipr/location/binding.h"
#include "sipr/redirect/redirect.h"
#include "sipr/sip/headers.h"
#include "sipr/sip/message.h"
#include "support/fake_sender.h"
#include "support/parsed_response.h"
#include "support/peer.h"

namespace sipr::test::redirect_rig {

using location::Binding;
using location::BindingView;
using location::StoreError;
using redirect::Config;
using redirect::Decision;
using redirect::Step;

inline const base::SipKey kKey = base::derive_sip_key("redirect unit tests");
constexpr int64_t kNow = 1'700'000'000'000;  // wall clock of the tests, unix ms

// ---------------------------------------------------------------------------------------------
// Requests

// One request; an empty header value leaves that header out.
struct Req {
    std::string method = "INVITE";
    std::string uri = "sip:bob@example.com";
    std::string cseq_method;  // "" = method
    std::string via = "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds";
    std::string from = "Alice <sip:alice@atlanta.com>;tag=1928301774";
    std::string to = "Bob <sip:bob@example.com>";
    std::string call_id = "a84b4c76e66710@pc33.atlanta.com";
    std::string cseq_number = "314159";
    std::string max_forwards = "70";
    std::vector<std::string> extra;  // whole header lines without CRLF
    std::string content_length = "0";
    std::string body;

    [[nodiscard]] std::string text() const {
        std::string t = method + " " + uri + " SIP/2.0\r\n";
        if (!via.empty()) t += "Via: " + via + "\r\n";
        if (!max_forwards.empty()) t += "Max-Forwards: " + max_forwards + "\r\n";
        if (!to.empty()) t += "To: " + to + "\r\n";
        if (!from.empty()) t += "From: " + from + "\r\n";
        if (!call_id.empty()) t += "Call-ID: " + call_id + "\r\n";
        if (!cseq_number.empty())
            t += "CSeq: " + cseq_number + " " + (cseq_method.empty() ? method : cseq_method) +
                 "\r\n";
        t += "Contact: <sip:alice@pc33.atlanta.com>\r\n";
        for (const std::string& e : extra) t += e + "\r\n";
        if (!content_length.empty()) t += "Content-Length: " + content_length + "\r\n";
        t += "\r\n";
        t += body;
        return t;
    }
};

inline Req make(std::string method, std::string uri) {
    Req r;
    r.method = std::move(method);
    r.uri = std::move(uri);
    return r;
}

// decide() over one request, with storage that outlives the Decision's views.
struct Decided {
    std::string bytes;
    std::unique_ptr<sip::Message> msg = std::make_unique<sip::Message>();
    sip::RequestCore core;
    std::array<char, sip::kMaxAorLength> aor_buf{};
    Decision d;
};

inline std::unique_ptr<Decided> decide(const Config& c, std::string bytes, bool store_up = true,
                                       bool draining = false) {
    auto out = std::make_unique<Decided>();
    out->bytes = std::move(bytes);
    out->d =
        redirect::decide(c, out->bytes, *out->msg, out->core, out->aor_buf, store_up, draining);
    return out;
}

inline std::unique_ptr<Decided> decide(const Config& c, const Req& r, bool store_up = true,
                                       bool draining = false) {
    return decide(c, r.text(), store_up, draining);
}

inline Config base_config() {
    Config c;
    c.tag_key = kKey;
    return c;
}

// ---------------------------------------------------------------------------------------------
// Responses

// A response parsed back, with its Contacts.
using Parsed = ParsedResponse;
using test::parse_response;

inline bool contains(std::string_view hay, std::string_view needle) {
    return hay.find(needle) != std::string_view::npos;
}

// ---------------------------------------------------------------------------------------------
// Bindings and write_redirect()

inline Binding binding(std::string contact, uint16_t q = 1000, int64_t expires_in_ms = 3'600'000,
                       int64_t updated_ago_ms = 10'000) {
    Binding b;
    b.contact = std::move(contact);
    b.q = q;
    b.expires_at_ms = kNow + expires_in_ms;
    b.updated_at_ms = kNow - updated_ago_ms;
    b.call_id = "reg-call-id@ua";
    b.cseq = 7;
    b.received = "192.0.2.50:5060";
    return b;
}

// Views of owned bindings, as a store hands them over.
struct Views {
    std::vector<std::string> packed;
    std::vector<BindingView> views;
    explicit Views(const std::vector<Binding>& bs) {
        packed.reserve(bs.size());
        for (const Binding& b : bs) packed.push_back(location::pack_binding(b));
        views.resize(packed.size());
        for (std::size_t i = 0; i < packed.size(); ++i)
            REQUIRE(location::unpack_binding(packed[i], views[i]));
    }
};

struct Written {
    std::vector<char> out = std::vector<char>(8192);  // res.response points here
    redirect::WriteResult res;
    std::unique_ptr<Parsed> parsed;
};

inline Written write(const Config& c, const Req& r, const std::vector<Binding>& bs,
                     StoreError err = StoreError::None, std::size_t limit = 1300,
                     int64_t now = kNow) {
    auto d = decide(c, r);
    REQUIRE(d->d.step == Step::Lookup);
    Views v(bs);
    redirect::LookupOutcome found;
    found.error = err;
    found.bindings = v.views;
    found.now_ms = now;
    sip::Source src{"192.0.2.10", 5062};
    Written w;
    w.res = redirect::write_redirect(c, *d->msg, d->core, found, src, limit, w.out);
    w.parsed = parse_response(w.res.response);
    return w;
}

inline Written write(const std::vector<Binding>& bs) {
    return write(base_config(), Req{}, bs);
}

// ---------------------------------------------------------------------------------------------
// Fakes for Redirector

inline uint64_t g_now_us = 1'000'000;
inline int64_t g_wall_ms = kNow;
inline uint64_t fake_now_us() noexcept {
    return g_now_us;
}
inline int64_t fake_wall_ms() noexcept {
    return g_wall_ms;
}

using test::make_peer;

using test::FakeSender;

// Keeps look-ups pending until the test answers them; every AOR has the same bindings.
class FakeStore final : public location::LookupStore {
  public:
    struct Pending {
        std::string aor;
        location::LookupCallback cb = nullptr;
        void* ctx = nullptr;
    };
    std::vector<Pending> pending;
    std::vector<std::string> asked;  // every AOR asked for, refused ones included
    StoreError refuse = StoreError::None;
    bool up = true;
    bool at_once = false;  // answer inside lookup(), as a near-cache hit does
    bool from_cache = false;
    std::vector<Binding> bindings;

    StoreError lookup(std::string_view aor, location::LookupCallback cb,
                      void* ctx) noexcept override {
        asked.emplace_back(aor);
        if (refuse != StoreError::None) return refuse;
        pending.push_back(Pending{std::string(aor), cb, ctx});
        if (at_once) answer();
        return StoreError::None;
    }
    [[nodiscard]] bool available() const noexcept override { return up; }

    // Answers the oldest pending look-up; the views die when this returns.
    void answer(StoreError err = StoreError::None, std::size_t garbage = 0) {
        REQUIRE(!pending.empty());
        Pending p = pending.front();
        pending.erase(pending.begin());
        auto v = std::make_unique<Views>(bindings);
        location::LookupReply reply;
        reply.error = err;
        if (err == StoreError::None) reply.bindings = v->views;
        reply.garbage = garbage;
        reply.from_cache = from_cache;
        p.cb(p.ctx, reply);
        // Scribble over the packed bytes before freeing them: a view kept past the call shows.
        for (std::string& s : v->packed) std::fill(s.begin(), s.end(), '#');
    }
};

struct Rig {
    FakeStore store;
    FakeSender sender;
    sip::MessageStats messages;
    redirect::RedirectStats stats;
    sip::Peer peer = make_peer("192.0.2.10", 5062);
    std::unique_ptr<redirect::Redirector> r;

    explicit Rig(Config c = base_config()) {
        g_now_us = 1'000'000;
        g_wall_ms = kNow;
        r = std::make_unique<redirect::Redirector>(std::move(c), store, sender, messages, stats,
                                                   &fake_now_us, &fake_wall_ms);
    }
    void feed(const Req& req) { feed(req.text()); }
    void feed(const std::string& bytes, bool trusted = false) {
        r->on_datagram(bytes, peer, trusted);
    }
    [[nodiscard]] uint64_t responses(uint16_t code) const { return messages.responses[code].get(); }
    [[nodiscard]] uint64_t requests(sip::Method m) const {
        return messages.requests[static_cast<std::size_t>(m)].get();
    }
    [[nodiscard]] uint64_t dropped(base::DropReason d) const {
        return messages.dropped[static_cast<std::size_t>(d)].get();
    }
    [[nodiscard]] uint64_t redis_errors(base::RedisErrorKind k) const {
        return stats.redis_errors[static_cast<std::size_t>(k)].get();
    }
};

}  // namespace sipr::test::redirect_rig
