#pragma once
// What a SIP worker counts of the messages it receives and sends, whichever service it runs: one
// MessageStats per worker, written only by that worker (base::Counter), read by the metrics
// layer at scrape time.
#include <array>
#include <cstddef>
#include <cstdint>

#include "sipr/base/stats.h"
#include "sipr/sip/method.h"

namespace sipr::sip {

struct MessageStats {
    static constexpr std::size_t kCodes = 700;           // status codes 100..699
    std::array<base::Counter, kMethodCount> requests{};  // indexed by Method
    std::array<base::Counter, kCodes> responses{};       // indexed by status code
    std::array<base::Counter, static_cast<std::size_t>(base::DropReason::kCount)> dropped{};
    base::Counter datagrams;  // every datagram the worker's socket received, before any check

    void request(Method m) noexcept {
        if (static_cast<std::size_t>(m) < kMethodCount) requests[static_cast<std::size_t>(m)].inc();
    }
    void response(uint16_t code) noexcept {
        if (code < kCodes) responses[code].inc();
    }
    void drop(base::DropReason r) noexcept { dropped[static_cast<std::size_t>(r)].inc(); }
};

}  // namespace sipr::sip
