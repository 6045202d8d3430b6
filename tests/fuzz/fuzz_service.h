#pragma once
// What the service fuzz targets (fuzz_redirect, fuzz_registrar) share: the input format, a
// recording Sender, and the checks every response a service sends must pass.
//
// Input: a datagram, optionally followed by "\n#store#\n" and a script. The script is read with
// libFuzzer's FuzzedDataProvider and says how the service is configured and how the fake store
// behaves (bindings, errors, when and in which order it answers). Without a script every choice
// is its first option, so a tests/data/*.sip file is a seed as it is.
#include <fuzzer/FuzzedDataProvider.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "sipr/sip/headers.h"
#include "sipr/sip/intake.h"
#include "sipr/sip/message.h"
#include "sipr/sip/request.h"
#include "sipr/sip/response.h"

namespace sipr::fuzz {

inline constexpr std::string_view kScriptMark = "\n#store#\n";
inline constexpr base::SipKey kTagKey{0x0706050403020100u, 0x0f0e0d0c0b0a0908u};

struct Input {
    std::string_view datagram;
    std::string_view script;
};

// Splits the input at the last script mark.
inline Input split_input(std::string_view bytes) noexcept {
    std::size_t at = bytes.rfind(kScriptMark);
    if (at == std::string_view::npos) return {bytes, {}};
    return {bytes.substr(0, at), bytes.substr(at + kScriptMark.size())};
}

// One of `options`, the first when the script is used up.
template <typename T>
T pick(FuzzedDataProvider& fdp, std::initializer_list<T> options) {
    std::size_t i = fdp.ConsumeIntegralInRange<std::size_t>(0, options.size() - 1);
    return *(options.begin() + i);
}

// A peer at 192.0.2.7:5062 or [2001:db8::7]:5060, as the app fills one from a datagram.
inline sip::Peer make_peer(bool v6) {
    sip::Peer p;
    const char* ip = v6 ? "2001:db8::7" : "192.0.2.7";
    if (v6) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(5060);
        inet_pton(AF_INET6, ip, &a.sin6_addr);
        std::memcpy(&p.addr, &a, sizeof a);
        p.port = 5060;
    } else {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(5062);
        inet_pton(AF_INET, ip, &a.sin_addr);
        std::memcpy(&p.addr, &a, sizeof a);
        p.port = 5062;
    }
    p.ip_len = static_cast<uint8_t>(std::strlen(ip));
    std::memcpy(p.ip, ip, p.ip_len);
    return p;
}

// What the harness itself makes of the request, to hold the answers against it. The datagram is
// copied so the views outlive the service's own buffers.
struct Expected {
    std::string bytes;
    std::unique_ptr<sip::Message> msg = std::make_unique<sip::Message>();
    sip::RequestCore core;
    sip::IntakeResult intake;
    std::size_t vias = 0;

    Expected(std::string_view datagram, std::size_t max_message, std::size_t max_headers)
        : bytes(datagram) {
        intake = sip::intake(bytes, max_message, max_headers, *msg, core);
        if (intake.action == sip::IntakeAction::Proceed) vias = msg->count(sip::HeaderId::Via);
    }
    [[nodiscard]] bool proceeds() const noexcept {
        return intake.action == sip::IntakeAction::Proceed;
    }
};

// A response as sent, parsed back (the views point into `bytes`).
struct Sent {
    std::string bytes;
    uint16_t port = 0;
    std::unique_ptr<sip::Message> msg = std::make_unique<sip::Message>();
};

// Records every response and checks what holds for any response of any service: it fits
// `limit`, parses as a SIP response with a known status, and, for a request that passed intake,
// carries the request's Vias, Call-ID and CSeq, a tagged To, and goes to the RFC 3261 §18.2.2 port.
class RecordingSender final : public sip::Sender {
  public:
    RecordingSender(const Expected& req, const sip::Peer& peer, std::size_t limit,
                    std::size_t own_buffer)
        : req_(req), peer_(peer), limit_(limit), buffer_(own_buffer) {}

    bool send(std::string_view bytes, const sip::Peer& to, uint16_t port) noexcept override {
        SIPR_FUZZ_CHECK(!bytes.empty());
        SIPR_FUZZ_CHECK(bytes.size() <= limit_);
        SIPR_FUZZ_CHECK(std::memcmp(&to.addr, &peer_.addr, sizeof to.addr) == 0);
        auto s = std::make_unique<Sent>();
        s->bytes.assign(bytes);
        s->port = port;
        sip::ParseStatus ps =
            sip::parse_message(s->bytes, *s->msg, sip::ParseLimits{65535, sip::kHeaderCapacity});
        SIPR_FUZZ_CHECK(ps == sip::ParseStatus::Ok);
        const sip::Message& m = *s->msg;
        SIPR_FUZZ_CHECK(!m.is_request);
        SIPR_FUZZ_CHECK(m.status_code >= 200 && m.status_code <= 699);
        SIPR_FUZZ_CHECK(s->bytes.starts_with("SIP/2.0 ") && s->bytes.ends_with("\r\n\r\n"));
        SIPR_FUZZ_CHECK(m.body.empty());
        if (req_.proceeds()) {
            const sip::RequestCore& core = req_.core;
            SIPR_FUZZ_CHECK(port == sip::response_port(core.top_via, peer_.port));
            const sip::Header* call_id = m.find(sip::HeaderId::CallId);
            SIPR_FUZZ_CHECK(call_id != nullptr && call_id->value == core.call_id);
            SIPR_FUZZ_CHECK(m.count(sip::HeaderId::CallId) == 1);
            sip::CSeq cseq;
            const sip::Header* cseq_h = m.find(sip::HeaderId::CSeq);
            SIPR_FUZZ_CHECK(cseq_h != nullptr && sip::parse_cseq(cseq_h->value, cseq));
            SIPR_FUZZ_CHECK(cseq.number == core.cseq.number);
            SIPR_FUZZ_CHECK(cseq.method_text == core.cseq.method_text);
            SIPR_FUZZ_CHECK(m.count(sip::HeaderId::Via) == req_.vias);
            sip::FromTo to;
            const sip::Header* to_h = m.find(sip::HeaderId::To);
            SIPR_FUZZ_CHECK(to_h != nullptr && sip::parse_from_to(to_h->value, to));
            SIPR_FUZZ_CHECK(!to.tag.empty());
            // The tag is a function of the request: every answer to it (a retransmission too)
            // carries the same one (DESIGN §4).
            if (!sent.empty()) {
                sip::FromTo first;
                const sip::Header* h = sent.front()->msg->find(sip::HeaderId::To);
                SIPR_FUZZ_CHECK(h != nullptr && sip::parse_from_to(h->value, first));
                SIPR_FUZZ_CHECK(first.tag == to.tag);
            }
        }
        sent.push_back(std::move(s));
        return true;
    }
    [[nodiscard]] std::span<char> send_buffer() noexcept override { return buffer_; }

    std::vector<std::unique_ptr<Sent>> sent;

  private:
    const Expected& req_;
    const sip::Peer& peer_;
    std::size_t limit_;
    std::vector<char> buffer_;
};

// Parses every Contact of a response; returns them (views into `m`'s bytes).
inline std::vector<sip::Contact> response_contacts(const sip::Message& m) {
    std::vector<sip::Contact> out;
    for (std::size_t i = 0; i < m.header_count; ++i) {
        if (m.headers[i].id != sip::HeaderId::Contact) continue;
        sip::Contact c;
        const bool parsed = sip::parse_contact(m.headers[i].value, c);
        if (!parsed) {
            std::fprintf(stderr, "fuzz: unparsable Contact in a response: [%.*s]\n",
                         static_cast<int>(m.headers[i].value.size()), m.headers[i].value.data());
            for (std::size_t k = 0; k < m.header_count; ++k)
                std::fprintf(stderr, "fuzz:   %.*s: %.*s\n",
                             static_cast<int>(m.headers[k].name.size()), m.headers[k].name.data(),
                             static_cast<int>(m.headers[k].value.size()),
                             m.headers[k].value.data());
        }
        SIPR_FUZZ_CHECK(parsed);
        // Any absolute URI may be a contact (RFC 3261 §10.2.1), never a malformed sip/sips/tel one.
        SIPR_FUZZ_CHECK(!c.star && c.addr.uri_status != sip::UriStatus::Malformed);
        SIPR_FUZZ_CHECK(c.has_expires);
        out.push_back(c);
    }
    return out;
}

// A contact URI as a registrar would have stored it: the uri_text of a Contact header value that
// parses (any scheme), else "" (the registrar answers 400 to such a REGISTER, stores nothing).
inline std::string storable_contact(std::string_view text) {
    std::string value = "<" + std::string(text) + ">";
    sip::Contact c;
    if (!sip::parse_contact(value, c) || c.star) return {};
    return std::string(c.addr.uri_text);
}

}  // namespace sipr::fuzz
