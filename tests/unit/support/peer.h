#pragma once
// Test support shared by the service tests: a sip::Peer for a literal address, as the app fills
// one from a received datagram's source.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>

#include "sipr/sip/intake.h"

namespace sipr::test {

// A Peer for "192.0.2.7" or "2001:db8::7" at `port`.
inline sip::Peer make_peer(const char* ip, uint16_t port) {
    sip::Peer p;
    if (std::strchr(ip, ':') != nullptr) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(port);
        REQUIRE(inet_pton(AF_INET6, ip, &a.sin6_addr) == 1);
        std::memcpy(&p.addr, &a, sizeof a);
    } else {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        REQUIRE(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
        std::memcpy(&p.addr, &a, sizeof a);
    }
    p.ip_len = static_cast<uint8_t>(std::strlen(ip));
    std::memcpy(p.ip, ip, p.ip_len);
    p.port = port;
    return p;
}

}  // namespace sipr::test
