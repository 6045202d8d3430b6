#include "sipr/location/near_cache.h"

#include <algorithm>
#include <functional>

#include "sipr/location/schema.h"

namespace sipr::location {

namespace {

// An entry's text beyond this is not cached (such an AOR goes to Redis every time): bounds the
// memory of one entry, and a 302 of 1300 bytes could not carry that many contacts anyway.
constexpr std::size_t kMaxEntryBytes = 4096;

std::size_t text_size(const BindingView& b) noexcept {
    return b.call_id.size() + b.contact.size() + b.path.size() + b.received.size() +
           b.user_agent.size() + b.instance.size();
}

}  // namespace

std::string_view aor_of_location_key(std::string_view key) noexcept {
    if (key.size() < kLocationPrefix.size() + 2 ||
        key.substr(0, kLocationPrefix.size()) != kLocationPrefix)
        return {};
    std::string_view rest = key.substr(kLocationPrefix.size());
    if (rest.front() != '{' || rest.back() != '}') return {};
    return rest.substr(1, rest.size() - 2);
}

NearCache::NearCache(NearCacheOptions opts) : opts_(opts) {
    entries_.reserve(opts_.max_entries);
    free_.reserve(opts_.max_entries);
    std::size_t cap = 16;
    while (cap < 2 * static_cast<std::size_t>(opts_.max_entries)) cap *= 2;
    table_.assign(cap, kEmpty);
    mask_ = cap - 1;
}

uint64_t NearCache::hash_of(std::string_view aor) noexcept {
    return std::hash<std::string_view>{}(aor);
}

uint32_t NearCache::find_slot(std::string_view aor, uint64_t h) const noexcept {
    for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
        uint32_t idx = table_[i];
        if (idx == kEmpty) return kEmpty;
        const Entry& e = entries_[idx];
        if (e.hash == h && e.aor == aor) return static_cast<uint32_t>(i);
    }
}

void NearCache::erase_slot(uint32_t slot) noexcept {
    // Linear probing without tombstones: move later members of the probe run back into the hole
    // unless their home slot lies cyclically in (hole, j].
    uint64_t hole = slot;
    uint64_t j = slot;
    for (;;) {
        table_[hole] = kEmpty;
        for (;;) {
            j = (j + 1) & mask_;
            uint32_t idx = table_[j];
            if (idx == kEmpty) return;
            uint64_t home = entries_[idx].hash & mask_;
            bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
            if (!stays) break;
        }
        table_[hole] = table_[j];
        entries_[table_[hole]].slot = static_cast<uint32_t>(hole);
        hole = j;
    }
}

void NearCache::remove(uint32_t idx) noexcept {
    Entry& e = entries_[idx];
    erase_slot(e.slot);
    e.slot = kEmpty;
    e.referenced = false;
    free_.push_back(idx);  // within the reserved capacity: no allocation
    --used_;
}

uint32_t NearCache::take_entry(uint64_t now_ms) noexcept {
    if (free_.empty() && entries_.size() < opts_.max_entries) {
        entries_.emplace_back();  // within the reserved capacity: entries never move
        return static_cast<uint32_t>(entries_.size() - 1);
    }
    if (free_.empty()) {
        // CLOCK: an entry past its TTL goes at once; a referenced one gets a second chance. Two
        // turns of the hand find a victim at the latest.
        const auto n = static_cast<uint32_t>(entries_.size());
        for (uint32_t step = 0; step <= 2 * n; ++step) {
            uint32_t idx = hand_;
            hand_ = hand_ + 1 == n ? 0 : hand_ + 1;
            Entry& e = entries_[idx];
            if (e.slot == kEmpty) continue;
            if (e.fresh_until_ms > now_ms && e.referenced) {
                e.referenced = false;
                continue;
            }
            remove(idx);
            break;
        }
    }
    uint32_t idx = free_.back();
    free_.pop_back();
    return idx;
}

bool NearCache::raced(uint64_t h, const Ticket& t) const noexcept {
    uint64_t since = invalidations_ - t.invalidations;
    if (since == 0) return false;
    if (since > kRing) return true;  // the ring forgot some: assume the worst
    for (uint64_t n = t.invalidations + 1; n <= invalidations_; ++n)
        if (ring_[n % kRing] == h) return true;
    return false;
}

NearCache::Found NearCache::find(std::string_view aor, uint64_t now_ms) noexcept {
    if (used_ == 0) return {};
    uint64_t h = hash_of(aor);
    uint32_t slot = find_slot(aor, h);
    if (slot == kEmpty) return {};
    uint32_t idx = table_[slot];
    Entry& e = entries_[idx];
    if (now_ms >= e.fresh_until_ms) {
        remove(idx);
        return {};
    }
    e.referenced = true;
    return Found{true, e.views};
}

NearCache::Insert NearCache::insert(std::string_view aor, Ticket t,
                                    std::span<const BindingView> bindings,
                                    uint64_t now_ms) noexcept {
    if (!enabled_ || t.generation == 0) return Insert::Disabled;
    if (t.generation != generation_) return Insert::Raced;
    const uint64_t h = hash_of(aor);
    if (raced(h, t)) return Insert::Raced;

    std::size_t total = 0;
    for (const BindingView& b : bindings) total += text_size(b);
    const uint32_t ttl = bindings.empty() ? opts_.negative_ttl_ms : opts_.ttl_ms;
    uint32_t slot = find_slot(aor, h);
    if (ttl == 0 || opts_.max_entries == 0 || total > kMaxEntryBytes) {
        // Not kept; an older entry of the AOR must not outlive this newer answer either.
        if (slot != kEmpty) remove(table_[slot]);
        return Insert::Uncacheable;
    }

    uint32_t idx;
    if (slot != kEmpty) {
        idx = table_[slot];
    } else {
        idx = take_entry(now_ms);  // may evict, which moves table slots: probe after it
        uint64_t i = h & mask_;
        while (table_[i] != kEmpty) i = (i + 1) & mask_;
        table_[i] = idx;
        Entry& fresh = entries_[idx];
        fresh.slot = static_cast<uint32_t>(i);
        fresh.hash = h;
        fresh.aor.assign(aor);  // reuses the capacity of the entry's last AOR
        ++used_;
    }
    Entry& e = entries_[idx];
    e.fresh_until_ms = now_ms + ttl;
    e.referenced = false;
    // Keep an entry's storage near what it holds: one AOR with many bindings must not leave a
    // large buffer behind in an entry that later holds small ones.
    if (e.blob.capacity() > 1024 && e.blob.capacity() > 2 * total) std::string().swap(e.blob);
    if (e.views.capacity() > 16 && e.views.capacity() > 2 * bindings.size())
        std::vector<BindingView>().swap(e.views);
    e.blob.clear();
    e.views.clear();
    e.blob.reserve(total);  // no reallocation below: the views point into the blob
    e.views.reserve(bindings.size());
    auto copy = [&e](std::string_view v) {
        std::size_t at = e.blob.size();
        e.blob.append(v);
        return std::string_view(e.blob.data() + at, v.size());
    };
    for (const BindingView& b : bindings) {
        BindingView c = b;
        c.call_id = copy(b.call_id);
        c.contact = copy(b.contact);
        c.path = copy(b.path);
        c.received = copy(b.received);
        c.user_agent = copy(b.user_agent);
        c.instance = copy(b.instance);
        e.views.push_back(c);
    }
    return Insert::Stored;
}

bool NearCache::invalidate(std::string_view aor) noexcept {
    if (!enabled_) return false;
    const uint64_t h = hash_of(aor);
    ++invalidations_;
    ring_[invalidations_ % kRing] = h;
    if (used_ == 0) return false;
    uint32_t slot = find_slot(aor, h);
    if (slot == kEmpty) return false;
    remove(table_[slot]);
    return true;
}

std::size_t NearCache::clear() noexcept {
    std::size_t dropped = used_;
    if (used_ != 0) {
        std::fill(table_.begin(), table_.end(), kEmpty);
        free_.clear();
        for (std::size_t i = entries_.size(); i-- > 0;) {
            entries_[i].slot = kEmpty;
            entries_[i].referenced = false;
            free_.push_back(static_cast<uint32_t>(i));
        }
        used_ = 0;
    }
    hand_ = 0;
    return dropped;
}

std::size_t NearCache::flush() noexcept {
    std::size_t dropped = clear();
    ++generation_;
    return dropped;
}

std::size_t NearCache::set_enabled(bool on) noexcept {
    std::size_t dropped = clear();
    enabled_ = on;
    ++generation_;
    return dropped;
}

}  // namespace sipr::location
