#pragma once
// A sip::Sender that keeps what a service sends (bytes and destination), for the service unit
// tests; `accept` false makes every send fail, as a full send queue does.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/sip/intake.h"
#include "support/parsed_response.h"

namespace sipr::test {

class FakeSender final : public sip::Sender {
  public:
    struct Sent {
        std::string bytes;
        std::string ip;
        uint16_t port = 0;
    };
    std::vector<Sent> sent;
    bool accept = true;
    // last() also requires every Contact of the response to parse (the registrar's always do).
    bool strict_contacts = false;

    bool send(std::string_view bytes, const sip::Peer& to, uint16_t port) noexcept override {
        if (!accept) return false;
        sent.push_back(Sent{std::string(bytes), std::string(to.ip, to.ip_len), port});
        return true;
    }
    // The last response sent, parsed back.
    [[nodiscard]] std::unique_ptr<ParsedResponse> last() const {
        REQUIRE(!sent.empty());
        auto p = parse_response(sent.back().bytes);
        REQUIRE(p->status == sip::ParseStatus::Ok);
        if (strict_contacts) REQUIRE(p->bad_contacts == 0);
        return p;
    }
};

}  // namespace sipr::test
