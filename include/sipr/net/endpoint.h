#pragma once
// Socket addresses: parsing "host:port" from flags and formatting for responses and logs.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace sipr::net {

// Parses "1.2.3.4:5060", "[::1]:5060" or "localhost:5060" (localhost only as a name: no DNS on
// start-up paths) into `out`. Port 0 is allowed (the kernel picks one). Returns false on bad text.
[[nodiscard]] bool parse_endpoint(std::string_view text, sockaddr_storage& out) noexcept;

// Writes the numeric address of `sa` (no brackets, no port) into `out`; returns its length, or 0
// when it does not fit or the family is unknown.
[[nodiscard]] std::size_t format_ip(const sockaddr* sa, std::span<char> out) noexcept;

// The port of an AF_INET / AF_INET6 address, host order; 0 otherwise.
[[nodiscard]] uint16_t port_of(const sockaddr* sa) noexcept;

// "1.2.3.4:5060" or "[::1]:5060", for logs and start-up messages.
[[nodiscard]] std::string to_string(const sockaddr* sa);

// Size of the sockaddr for its family.
[[nodiscard]] socklen_t sockaddr_len(const sockaddr* sa) noexcept;

}  // namespace sipr::net
