#pragma once
// The counters of the stream transport (sipr_connections_*), declared here so the metrics layer
// can fold them without seeing sockets.
#include <array>
#include <cstddef>
#include <cstdint>

#include "sipr/base/stats.h"

namespace sipr::net {

// Names one connection of one StreamServer from its accept to its close; never reused (a slot
// index and a generation). 0 is no connection.
using ConnectionId = uint64_t;

// Why a connection was refused at accept (sipr_connections_refused_total{reason}).
enum class StreamRefusal : uint8_t { Connections, PerSource, Denied, kCount };
inline constexpr std::array<const char*, static_cast<std::size_t>(StreamRefusal::kCount)>
    kStreamRefusalNames{"connections", "per_source", "denied"};

// Why a connection ended (sipr_connections_closed_total{reason}).
enum class StreamClose : uint8_t {
    Peer,         // the client closed it (or reset it)
    Idle,         // nothing read or written for the idle timeout
    HeadTimeout,  // a message head not complete within its deadline (slow-loris)
    Backlog,      // the client does not read: answers beyond the write buffer
    Protocol,     // the stream cannot be framed (the handler said so)
    Error,        // a socket error
    Shutdown,     // the server closed
    kCount,
};
inline constexpr std::array<const char*, static_cast<std::size_t>(StreamClose::kCount)>
    kStreamCloseNames{"peer",     "idle",  "head_timeout", "write_backlog",
                      "protocol", "error", "shutdown"};

// One worker's stream counters (written by its loop thread only, read at scrape time).
struct StreamStats {
    base::Gauge open;  // connections open now
    base::Counter accepted;
    std::array<base::Counter, static_cast<std::size_t>(StreamRefusal::kCount)> refused{};
    std::array<base::Counter, static_cast<std::size_t>(StreamClose::kCount)> closed{};
    base::Counter bytes_in;
    base::Counter bytes_out;
    void refuse(StreamRefusal r) noexcept { refused[static_cast<std::size_t>(r)].inc(); }
    void close(StreamClose c) noexcept { closed[static_cast<std::size_t>(c)].inc(); }
};

}  // namespace sipr::net
