#pragma once
// What one worker's location store counts: the near-cache (CacheMetrics refers to these), the
// Redis Cluster redirections it followed (ClusterMetrics) and whether it can serve. Written only
// by that worker, read by the metrics layer at scrape time.
#include "sipr/base/stats.h"

namespace sipr::location {

struct StoreStats {
    base::Counter cache_hits, cache_misses, cache_invalidations;
    base::Counter
        cache_flushes;  // the whole near-cache dropped (tracking lost or regained, FLUSHALL)
    base::Gauge cache_entries;             // AORs in this worker's near-cache
    base::Counter redis_moved, redis_ask;  // Redis Cluster redirections followed (-MOVED, -ASK)
    base::Gauge redis_up;  // 1 while this worker's store can serve (its Redis connection is ready)
    // The registration counts register.lua keeps (sipr:stats), as last read by this worker's
    // Housekeeper (the registrar's first worker only); registered_known is 1 once one was read.
    base::Gauge registered_aors, registered_bindings, registered_known;
};

}  // namespace sipr::location
