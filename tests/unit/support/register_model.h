#pragma once
// register.lua (src/location/register.lua) in C++, for the fakes that stand in for Redis where a
// real server is too slow: the registrar's unit tests (tests/unit/registrar/registrar_test.cpp)
// and its fuzz target (tests/fuzz/fuzz_registrar.cpp). Nothing here depends on doctest, so the
// fuzz target can include it.
//
// tests/unit/location/register_script_test.cpp runs the same RegisterChanges through this model
// and through the real script on a real redis-server and requires the same error, the same
// reply and the same hash afterwards: a change to either that the other does not follow fails
// there.
//
// The model works on one AOR's hash (field -> packed binding) with "now" given by the caller
// (Redis TIME for the script). Like the script it reads only the first five packed fields
// (version, expires_at, updated_at, cseq, call_id) and leaves an entry of another version, or
// without a numeric expiry, where it is and out of the reply.
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/location/binding.h"
#include "sipr/location/store.h"

namespace sipr::test {

// One AOR's hash: field -> packed binding.
using RegisterTable = std::map<std::string, std::string>;

namespace register_model_detail {

struct Cur {
    std::string packed;
    int64_t exp = 0;
    int64_t upd = 0;
    uint32_t cseq = 0;
    std::string call_id;
    bool touched = false;
};

// Lua's tonumber() for the decimal integers the packed form holds; `fallback` when it is not one.
template <typename T>
T number(std::string_view s, T fallback, bool* ok = nullptr) {
    T v{};
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    const bool good = !s.empty() && ec == std::errc() && p == s.data() + s.size();
    if (ok != nullptr) *ok = good;
    return good ? v : fallback;
}

// The script's match of '^ver SEP exp SEP upd SEP cseq SEP call_id SEP'; false when it fails or
// the version is not "1" or the expiry not a number.
inline bool read_head(std::string_view v, Cur& out) {
    std::string_view f[5];
    std::size_t at = 0;
    for (std::string_view& field : f) {
        std::size_t sep = v.find(location::kFieldSep, at);
        if (sep == std::string_view::npos) return false;
        field = v.substr(at, sep - at);
        at = sep + 1;
    }
    bool exp_ok = false;
    out.exp = number<int64_t>(f[1], 0, &exp_ok);
    if (f[0] != location::kPackVersion || !exp_ok) return false;
    out.packed.assign(v);
    out.upd = number<int64_t>(f[2], 0);
    out.cseq = number<uint32_t>(f[3], 0);
    out.call_id.assign(f[4]);
    return true;
}

}  // namespace register_model_detail

// Applies `ch` to `table` as register.lua does at Redis TIME `now_ms`. On success fills `reply`
// with every live binding after the change (field -> packed: what the script returns) and
// returns None; on Stale or TooManyContacts the table is unchanged and `reply` empty.
inline location::StoreError apply_register_model(RegisterTable& table,
                                                 const location::RegisterChanges& ch,
                                                 int64_t now_ms, RegisterTable& reply) {
    using location::StoreError;
    using register_model_detail::Cur;
    reply.clear();
    std::map<std::string, Cur> cur;
    for (const auto& [field, packed] : table) {
        Cur c;
        if (!register_model_detail::read_head(packed, c)) continue;  // another version: left alone
        if (c.exp > now_ms) cur[field] = std::move(c);  // expired ones are deleted below
    }
    // RFC 3261 §10.3 step 7, before any write: same Call-ID with a lower CSeq.
    auto stale = [&](const std::string& field) {
        auto it = cur.find(field);
        return it != cur.end() && it->second.call_id == ch.call_id && ch.cseq < it->second.cseq;
    };
    if (ch.remove_all)
        for (const auto& kv : cur)
            if (stale(kv.first)) return StoreError::Stale;
    for (const location::ContactChange& c : ch.contacts)
        if (stale(c.key)) return StoreError::Stale;

    if (ch.retransmission) {
        // Nothing is written; what the first copy did must still be there.
        if (ch.remove_all)
            for (const auto& kv : cur)
                if (kv.second.call_id == ch.call_id) return StoreError::Stale;
        for (const location::ContactChange& c : ch.contacts) {
            auto it = cur.find(c.key);
            const bool bound_here = it != cur.end() && it->second.call_id == ch.call_id;
            const bool undone =
                c.expires_s == 0 ? bound_here : !bound_here || it->second.cseq != ch.cseq;
            if (undone) return StoreError::Stale;
        }
        for (const auto& kv : cur) reply[kv.first] = kv.second.packed;
        return StoreError::None;
    }

    std::size_t added = 0;
    if (ch.remove_all) cur.clear();
    for (const location::ContactChange& c : ch.contacts) {
        auto it = cur.find(c.key);
        if (c.expires_s == 0) {
            if (it != cur.end()) cur.erase(it);
        } else if (it != cur.end() && it->second.call_id == ch.call_id &&
                   it->second.cseq == ch.cseq) {
            // A retransmission of a request already applied: left as it is.
        } else {
            if (it == cur.end()) ++added;
            const int64_t exp = now_ms + static_cast<int64_t>(c.expires_s) * 1000;
            std::string packed(location::kPackVersion);
            packed += location::kFieldSep;
            packed += std::to_string(exp);
            packed += location::kFieldSep;
            packed += std::to_string(now_ms);
            packed += location::kFieldSep;
            packed += c.tail;
            cur[c.key] = Cur{std::move(packed), exp, now_ms, ch.cseq, ch.call_id, true};
        }
    }
    if (cur.size() > ch.max_contacts && added > 0) {
        if (!ch.evict_oldest) return StoreError::TooManyContacts;
        // The oldest first, those this request did not touch before those it did.
        std::vector<std::string> order;
        for (const auto& kv : cur) order.push_back(kv.first);
        std::sort(order.begin(), order.end(), [&](const std::string& x, const std::string& y) {
            const Cur& a = cur[x];
            const Cur& b = cur[y];
            if (a.touched != b.touched) return !a.touched;
            if (a.upd != b.upd) return a.upd < b.upd;
            return x < y;
        });
        for (std::size_t i = 0; cur.size() > ch.max_contacts; ++i) cur.erase(order[i]);
    }
    // Entries of another version stay; expired and removed ones go; the rest is `cur`.
    for (auto it = table.begin(); it != table.end();) {
        register_model_detail::Cur c;
        if (register_model_detail::read_head(it->second, c))
            it = table.erase(it);
        else
            ++it;
    }
    for (const auto& kv : cur) {
        table[kv.first] = kv.second.packed;
        reply[kv.first] = kv.second.packed;
    }
    return StoreError::None;
}

}  // namespace sipr::test
