#pragma once
// What one sip-redirectd worker's Redirector counts beyond its messages (sip::MessageStats):
// written only by that worker, read by the metrics layer at scrape time.
#include <array>
#include <cstddef>

#include "sipr/base/stats.h"

namespace sipr::redirect {

struct RedirectStats {
    base::Counter contacts_cut;      // contacts left out of a 302 to fit the datagram
    base::Counter garbage_bindings;  // stored bindings that failed to unpack (skipped)
    base::Gauge inflight_lookups;    // store look-ups started and not yet answered
    base::DurationHistogram lookup_duration;
    std::array<base::Counter, static_cast<std::size_t>(base::RedisErrorKind::kCount)>
        redis_errors{};

    void redis_error(base::RedisErrorKind k) noexcept {
        redis_errors[static_cast<std::size_t>(k)].inc();
    }
};

}  // namespace sipr::redirect
