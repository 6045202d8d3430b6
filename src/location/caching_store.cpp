#include "sipr/location/caching_store.h"

#include <new>

namespace sipr::location {

struct CachingStore::Op {
    CachingStore* owner = nullptr;
    std::string aor;  // capacity reused from one look-up to the next
    NearCache::Ticket ticket;
    LookupCallback cb = nullptr;
    void* ctx = nullptr;
};

CachingStore::CachingStore(LookupStore& inner, NearCacheOptions opts, CacheMetrics metrics,
                           int64_t (*wall_ms)() noexcept, uint64_t (*mono_ms)() noexcept)
    : inner_(inner), cache_(opts), metrics_(metrics), wall_ms_(wall_ms), mono_ms_(mono_ms) {
    scratch_.reserve(64);
}

CachingStore::~CachingStore() = default;

StoreError CachingStore::lookup(std::string_view aor, LookupCallback cb, void* ctx) noexcept {
    if (cache_.enabled()) {
        NearCache::Found f = cache_.find(aor, mono_ms_());
        if (f.hit) {
            metrics_.hits.inc();
            LookupReply reply;
            reply.from_cache = true;
            // DESIGN §4: a binding past its expiry is never returned, cached or not.
            const int64_t now = wall_ms_();
            std::size_t live = 0;
            for (const BindingView& b : f.bindings) live += b.expires_at_ms > now ? 1 : 0;
            if (live == f.bindings.size()) {
                reply.bindings = f.bindings;
            } else {
                scratch_.clear();
                // Grows (allocates) only for an AOR with more live bindings than any before.
                for (const BindingView& b : f.bindings)
                    if (b.expires_at_ms > now) scratch_.push_back(b);
                reply.bindings = scratch_;
            }
            cb(ctx, reply);
            return StoreError::None;
        }
        // find() may have dropped an entry past its TTL.
        metrics_.entries.set(static_cast<int64_t>(cache_.size()));
    }
    metrics_.misses.inc();
    Op* op = ops_.acquire();
    op->owner = this;
    op->aor.assign(aor);
    op->ticket = cache_.ticket();  // before the read leaves: see NearCache
    op->cb = cb;
    op->ctx = ctx;
    StoreError err = inner_.lookup(aor, &CachingStore::on_inner, op);
    if (err != StoreError::None) ops_.release(op);
    return err;
}

void CachingStore::on_inner(void* ctx, const LookupReply& reply) noexcept {
    auto* op = static_cast<Op*>(ctx);
    CachingStore* self = op->owner;
    if (reply.error == StoreError::None) {
        NearCache::Insert r =
            self->cache_.insert(op->aor, op->ticket, reply.bindings, self->mono_ms_());
        if (r == NearCache::Insert::Stored || r == NearCache::Insert::Uncacheable)
            self->metrics_.entries.set(static_cast<int64_t>(self->cache_.size()));
    }
    LookupCallback cb = op->cb;
    void* user = op->ctx;
    self->ops_.release(op);
    cb(user, reply);
}

void CachingStore::set_enabled(bool on) noexcept {
    bool was = cache_.enabled();
    std::size_t dropped = cache_.set_enabled(on);
    if (dropped != 0 || (was && !on)) metrics_.flushes.inc();
    metrics_.entries.set(0);
}

void CachingStore::on_invalidated(std::string_view key) noexcept {
    metrics_.invalidations.inc();
    std::string_view aor = aor_of_location_key(key);
    if (aor.empty()) return;
    if (cache_.invalidate(aor)) metrics_.entries.set(static_cast<int64_t>(cache_.size()));
}

void CachingStore::on_flush_all() noexcept {
    cache_.flush();
    metrics_.flushes.inc();
    metrics_.entries.set(0);
}

}  // namespace sipr::location
