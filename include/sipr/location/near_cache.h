#pragma once
// The near-cache of one redirect worker (DESIGN §7): AOR -> its live bindings as Redis last
// answered, or "none" (a negative entry, answered 404), for at most a TTL, in a fixed number of
// entries (CLOCK eviction). It stays correct because Redis tells the worker when a key it read
// changes (CLIENT TRACKING, see cache_tracker.h); this class only keeps the data and the rules:
//
// - Nothing is served or stored while disabled (tracking not confirmed). Enabling and disabling
//   both empty the cache.
// - A reply is stored only if no invalidation of its AOR and no flush happened between sending
//   the read (ticket()) and storing its reply (insert()): the invalidation travels on another
//   connection and may be processed before the (older) reply it invalidates. Recent
//   invalidations are kept in a ring of key hashes; a ticket older than the ring is refused.
//
// Single-threaded (one per worker); no allocation on find(); insert() reuses an entry's storage
// once it is large enough. At most 2^30 entries (a larger max_entries is taken as 2^30).
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/location/binding.h"

namespace sipr::location {

struct NearCacheOptions {
    uint32_t ttl_ms = 0;           // 0: no cache
    uint32_t negative_ttl_ms = 0;  // for "no live binding" (404) entries; 0: not cached
    uint32_t max_entries = 0;      // per cache (per worker)
    // Not the cache's own: the bound CacheTracker keeps on Redis's tracking table (the node's
    // tracking-table-max-keys), carried here to the worker that makes the tracker.
    uint64_t tracking_max_keys = 0;
};

class NearCache {
  public:
    // Taken when a read is sent; insert() judges the reply by it.
    struct Ticket {
        uint64_t generation = 0;  // 0: taken while disabled (never stored)
        uint64_t invalidations = 0;
    };
    // A fresh entry. `bindings` point into the cache: valid until the next insert, invalidate,
    // flush or set_enabled.
    struct Found {
        bool hit = false;
        std::span<const BindingView> bindings;  // empty for a negative entry
    };
    static constexpr std::size_t kRing = 256;  // invalidations remembered for the race check

    explicit NearCache(NearCacheOptions opts);
    NearCache(const NearCache&) = delete;
    NearCache& operator=(const NearCache&) = delete;

    // Turns caching on (tracking confirmed) or off (tracking lost). Either way empties the cache
    // and outdates every ticket. Returns the number of entries dropped.
    std::size_t set_enabled(bool on) noexcept;
    [[nodiscard]] bool enabled() const noexcept { return enabled_; }

    [[nodiscard]] Ticket ticket() const noexcept {
        return Ticket{enabled_ ? generation_ : 0, invalidations_};
    }

    // The entry of `aor` if present and younger than its TTL at `now_ms` (monotonic). An entry
    // past its TTL is dropped and reported as a miss. Marks a hit as recently used.
    [[nodiscard]] Found find(std::string_view aor, uint64_t now_ms) noexcept;

    enum class Insert : uint8_t { Stored, Disabled, Raced, Uncacheable };
    // Stores the reply `bindings` (copied) of a read sent under `t`, unless the cache was
    // disabled or flushed since, or `aor` was invalidated since (Raced), or the entry would not
    // be cached at all (a negative entry with negative TTL 0; over 4 KiB of binding text, an AOR
    // over 1 KiB or over 256 bindings: Uncacheable).
    // Replaces an older entry of the same AOR; evicts one (CLOCK) when full.
    Insert insert(std::string_view aor, Ticket t, std::span<const BindingView> bindings,
                  uint64_t now_ms) noexcept;

    // Redis said `aor` changed: drops its entry and remembers the invalidation (for insert()).
    // Returns true when an entry was dropped.
    bool invalidate(std::string_view aor) noexcept;
    // Redis said everything changed (FLUSHALL / FLUSHDB): drops every entry, outdates every
    // ticket. Returns the number dropped.
    std::size_t flush() noexcept;

    [[nodiscard]] std::size_t size() const noexcept { return used_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return opts_.max_entries; }

  private:
    static constexpr uint32_t kEmpty = 0xffffffffu;
    // One entry's storage is one buffer: a Head, the AOR, then (8-aligned) the BindingViews and
    // the bindings' text they point at. The table slot points at the buffer, so a hit reads the
    // slot and then one buffer from its start; the Entry is for the CLOCK hand and the free list.
    struct Head {
        uint64_t fresh_until_ms = 0;
        uint32_t aor_size = 0;
        uint32_t views = 0;
        bool referenced = false;  // CLOCK bit
    };
    struct Entry {
        std::unique_ptr<std::byte[]> buf;
        uint32_t buf_size = 0;   // bytes allocated at buf
        uint32_t slot = kEmpty;  // its place in table_ (kEmpty: free entry)
    };
    // A table slot: the entry's buffer and index, and 32 bits of its AOR's hash, so that a probe
    // passes over other AORs without touching their memory and an erase finds each member's home.
    struct Slot {
        std::byte* buf = nullptr;
        uint32_t idx = kEmpty;
        uint32_t hash = 0;
    };
    [[nodiscard]] static Head& head(std::byte* buf) noexcept {
        return *reinterpret_cast<Head*>(buf);
    }
    [[nodiscard]] static std::string_view aor_of(const std::byte* buf) noexcept {
        return {reinterpret_cast<const char*>(buf) + sizeof(Head),
                reinterpret_cast<const Head*>(buf)->aor_size};
    }
    [[nodiscard]] static std::size_t views_offset(std::size_t aor_size) noexcept {
        return (sizeof(Head) + aor_size + alignof(BindingView) - 1) & ~(alignof(BindingView) - 1);
    }
    [[nodiscard]] static BindingView* views_of(std::byte* buf) noexcept {
        return reinterpret_cast<BindingView*>(buf + views_offset(head(buf).aor_size));
    }

    [[nodiscard]] static uint32_t hash_of(std::string_view aor) noexcept;
    [[nodiscard]] uint32_t find_slot(std::string_view aor, uint32_t h) const noexcept;
    void erase_slot(uint32_t slot) noexcept;
    void remove(uint32_t idx) noexcept;
    [[nodiscard]] uint32_t take_entry(uint64_t now_ms) noexcept;
    std::size_t clear() noexcept;
    [[nodiscard]] bool raced(uint32_t h, const Ticket& t) const noexcept;

    NearCacheOptions opts_;
    std::vector<Entry> entries_;  // reserved at max_entries: entries never move
    std::vector<uint32_t> free_;  // free entry indices
    std::vector<Slot> table_;     // open addressing (linear probing)
    uint32_t mask_ = 0;
    uint32_t hand_ = 0;  // CLOCK hand over entries_
    std::size_t used_ = 0;
    bool enabled_ = false;
    uint64_t generation_ = 1;             // bumped by every flush / enable / disable
    uint64_t invalidations_ = 0;          // invalidations seen (enabled) so far
    std::array<uint32_t, kRing> ring_{};  // hash of invalidation n at ring_[n % kRing]
};

// The AOR of a location key "sipr:loc:{<aor>}" (DESIGN §6), or "" for any other key.
[[nodiscard]] std::string_view aor_of_location_key(std::string_view key) noexcept;

}  // namespace sipr::location
