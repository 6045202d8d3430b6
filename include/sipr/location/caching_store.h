#pragma once
// A LookupStore in front of another (the worker's RedisStore) that answers look-ups from a
// NearCache while the cache is enabled (DESIGN §7). Invalidations, flushes and the enabled state
// come from the owner (CacheTracker, from Redis); this class keeps the cache's rules and counts.
//
// Callback contract: as LookupStore's, except that a look-up answered from the cache runs its
// callback before lookup() returns (and lookup() then returns None). A miss goes to the inner
// store and its reply is stored (NearCache::insert decides) before it is handed on.
#include <memory>
#include <string>
#include <vector>

#include "sipr/base/op_pool.h"
#include "sipr/base/stats.h"
#include "sipr/location/near_cache.h"
#include "sipr/location/store.h"

namespace sipr::location {

// The counters the cache updates (the worker's metric shard, DESIGN §9).
struct CacheMetrics {
    base::Counter& hits;
    base::Counter& misses;         // look-ups that went to the inner store
    base::Counter& invalidations;  // keys Redis invalidated (present in the cache or not)
    base::Counter& flushes;        // the whole cache dropped: tracking lost/regained, FLUSHALL
    base::Gauge& entries;
};

// What a CacheTracker drives (cache_tracker.h): tracking confirmed or lost, and what Redis
// invalidated. Implemented by CachingStore, and by the per-node gates of a ClusterCacheTracker.
class TrackedCache {
  public:
    // Tracking confirmed (true) or lost (false) for the reads this cache is filled from.
    virtual void set_tracked(bool on) noexcept = 0;
    // Redis invalidated `key` (a Redis key name).
    virtual void on_invalidated(std::string_view key) noexcept = 0;
    // Redis invalidated everything (FLUSHALL / FLUSHDB).
    virtual void on_flush_all() noexcept = 0;

  protected:
    ~TrackedCache() = default;
};

class CachingStore final : public LookupStore, public TrackedCache {
  public:
    // `inner` is not owned and must outlive this. `wall_ms` is the wall clock (unix ms) that a
    // binding's expiry is judged by; `mono_ms` a monotonic clock for the TTLs.
    CachingStore(LookupStore& inner, NearCacheOptions opts, CacheMetrics metrics,
                 int64_t (*wall_ms)() noexcept, uint64_t (*mono_ms)() noexcept);
    ~CachingStore() override;

    [[nodiscard]] StoreError lookup(std::string_view aor, LookupCallback cb,
                                    void* ctx) noexcept override;
    [[nodiscard]] bool available() const noexcept override { return inner_.available(); }

    // Tracking confirmed (true) or lost (false): flushes either way (counted when it dropped
    // anything or turns the cache off).
    void set_enabled(bool on) noexcept;
    void set_tracked(bool on) noexcept override { set_enabled(on); }
    // Only location keys concern the cache.
    void on_invalidated(std::string_view key) noexcept override;
    void on_flush_all() noexcept override;

    [[nodiscard]] bool enabled() const noexcept { return cache_.enabled(); }
    [[nodiscard]] const NearCache& cache() const noexcept { return cache_; }

  private:
    struct Op;
    static void on_inner(void* ctx, const LookupReply& reply) noexcept;

    LookupStore& inner_;
    NearCache cache_;
    CacheMetrics metrics_;
    int64_t (*wall_ms_)() noexcept;
    uint64_t (*mono_ms_)() noexcept;
    base::OpPool<Op> ops_;
    std::vector<BindingView> scratch_;  // a hit's bindings still live now
};

}  // namespace sipr::location
