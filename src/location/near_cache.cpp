#include "sipr/location/near_cache.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <new>

#include "sipr/location/schema.h"

namespace sipr::location {

namespace {

// An entry's text beyond this is not cached (such an AOR goes to Redis every time): bounds the
// memory of one entry, and a 302 of 1300 bytes could not carry that many contacts anyway.
constexpr std::size_t kMaxEntryBytes = 4096;
// The AOR and the binding count of a cached entry are bounded too, so that an entry's buffer size
// fits its 32-bit fields many times over (an AOR this long is not a real one).
constexpr std::size_t kMaxAorBytes = 1024;
constexpr std::size_t kMaxEntryBindings = 256;

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
    opts_.max_entries = std::min<uint32_t>(opts_.max_entries, uint32_t{1} << 30);
    entries_.reserve(opts_.max_entries);
    free_.reserve(opts_.max_entries);
    std::size_t cap = 16;
    while (cap < 2 * static_cast<std::size_t>(opts_.max_entries)) cap *= 2;
    table_.assign(cap, Slot{});
    mask_ = static_cast<uint32_t>(cap - 1);
}

uint32_t NearCache::hash_of(std::string_view aor) noexcept {
    uint64_t h = std::hash<std::string_view>{}(aor);
    return static_cast<uint32_t>(h ^ (h >> 32));
}

uint32_t NearCache::find_slot(std::string_view aor, uint32_t h) const noexcept {
    for (uint32_t i = h & mask_;; i = (i + 1) & mask_) {
        const Slot& s = table_[i];
        if (s.idx == kEmpty) return kEmpty;
        if (s.hash == h && aor_of(s.buf) == aor) return i;
    }
}

void NearCache::erase_slot(uint32_t slot) noexcept {
    // Linear probing without tombstones: move later members of the probe run back into the hole
    // unless their home slot lies cyclically in (hole, j].
    uint32_t hole = slot;
    uint32_t j = slot;
    for (;;) {
        table_[hole] = Slot{};
        for (;;) {
            j = (j + 1) & mask_;
            const Slot& s = table_[j];
            if (s.idx == kEmpty) return;
            uint32_t home = s.hash & mask_;
            bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
            if (!stays) break;
        }
        table_[hole] = table_[j];
        entries_[table_[hole].idx].slot = hole;
        hole = j;
    }
}

void NearCache::remove(uint32_t idx) noexcept {
    Entry& e = entries_[idx];
    erase_slot(e.slot);
    e.slot = kEmpty;
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
            Head& h = head(e.buf.get());
            if (h.fresh_until_ms > now_ms && h.referenced) {
                h.referenced = false;
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

bool NearCache::raced(uint32_t h, const Ticket& t) const noexcept {
    uint64_t since = invalidations_ - t.invalidations;
    if (since == 0) return false;
    if (since > kRing) return true;  // the ring forgot some: assume the worst
    for (uint64_t n = t.invalidations + 1; n <= invalidations_; ++n)
        if (ring_[n % kRing] == h) return true;
    return false;
}

NearCache::Found NearCache::find(std::string_view aor, uint64_t now_ms) noexcept {
    if (used_ == 0) return {};
    uint32_t slot = find_slot(aor, hash_of(aor));
    if (slot == kEmpty) return {};
    std::byte* buf = table_[slot].buf;
    Head& h = head(buf);
    if (now_ms >= h.fresh_until_ms) {
        remove(table_[slot].idx);
        return {};
    }
    h.referenced = true;
    return Found{true, {views_of(buf), h.views}};
}

NearCache::Insert NearCache::insert(std::string_view aor, Ticket t,
                                    std::span<const BindingView> bindings,
                                    uint64_t now_ms) noexcept {
    if (!enabled_ || t.generation == 0) return Insert::Disabled;
    if (t.generation != generation_) return Insert::Raced;
    const uint32_t h = hash_of(aor);
    if (raced(h, t)) return Insert::Raced;

    std::size_t text = 0;
    for (const BindingView& b : bindings) text += text_size(b);
    const uint32_t ttl = bindings.empty() ? opts_.negative_ttl_ms : opts_.ttl_ms;
    uint32_t slot = find_slot(aor, h);
    if (ttl == 0 || opts_.max_entries == 0 || text > kMaxEntryBytes || aor.size() > kMaxAorBytes ||
        bindings.size() > kMaxEntryBindings) {
        // Not kept; an older entry of the AOR must not outlive this newer answer either.
        if (slot != kEmpty) remove(table_[slot].idx);
        return Insert::Uncacheable;
    }

    uint32_t idx;
    if (slot != kEmpty) {
        idx = table_[slot].idx;
    } else {
        idx = take_entry(now_ms);  // may evict, which moves table slots: probe after it
        slot = h & mask_;
        while (table_[slot].idx != kEmpty) slot = (slot + 1) & mask_;
        table_[slot] = Slot{nullptr, idx, h};
        entries_[idx].slot = slot;
        ++used_;
    }
    Entry& e = entries_[idx];
    const std::size_t at_views = views_offset(aor.size());
    const std::size_t need = at_views + bindings.size() * sizeof(BindingView) + text;
    // Keep an entry's storage near what it holds: one AOR with many bindings must not leave a
    // large buffer behind in an entry that later holds small ones.
    if (need > e.buf_size || (e.buf_size > 1024 && e.buf_size > 2 * need)) {
        e.buf.reset(new std::byte[need]);  // std::bad_alloc terminates (src/README.md)
        e.buf_size = static_cast<uint32_t>(need);
    }
    std::byte* buf = e.buf.get();
    table_[slot].buf = buf;
    Head* hd = new (buf) Head;
    hd->fresh_until_ms = now_ms + ttl;
    hd->aor_size = static_cast<uint32_t>(aor.size());
    hd->views = static_cast<uint32_t>(bindings.size());
    std::memcpy(buf + sizeof(Head), aor.data(), aor.size());
    std::byte* at = buf + at_views + bindings.size() * sizeof(BindingView);
    auto copy = [&at](std::string_view v) {
        if (v.empty()) return std::string_view();
        std::memcpy(at, v.data(), v.size());
        std::string_view out(reinterpret_cast<const char*>(at), v.size());
        at += v.size();
        return out;
    };
    auto* views = reinterpret_cast<BindingView*>(buf + at_views);
    for (std::size_t k = 0; k < bindings.size(); ++k) {
        const BindingView& b = bindings[k];
        BindingView* c = new (views + k) BindingView(b);
        c->call_id = copy(b.call_id);
        c->contact = copy(b.contact);
        c->path = copy(b.path);
        c->received = copy(b.received);
        c->user_agent = copy(b.user_agent);
        c->instance = copy(b.instance);
    }
    return Insert::Stored;
}

bool NearCache::invalidate(std::string_view aor) noexcept {
    if (!enabled_) return false;
    const uint32_t h = hash_of(aor);
    ++invalidations_;
    ring_[invalidations_ % kRing] = h;
    if (used_ == 0) return false;
    uint32_t slot = find_slot(aor, h);
    if (slot == kEmpty) return false;
    remove(table_[slot].idx);
    return true;
}

std::size_t NearCache::clear() noexcept {
    std::size_t dropped = used_;
    if (used_ != 0) {
        std::fill(table_.begin(), table_.end(), Slot{});
        free_.clear();
        for (std::size_t i = entries_.size(); i-- > 0;) {
            entries_[i].slot = kEmpty;
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
