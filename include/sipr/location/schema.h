#pragma once
// Redis key names of DESIGN §6. Every key of an AOR carries the AOR in a hash tag {..} so all of
// them live in one Redis Cluster slot.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/location/store.h"

namespace sipr::location {

inline constexpr std::string_view kLocationPrefix = "sipr:loc:";
inline constexpr std::string_view kSubscriberPrefix = "sipr:sub:";
inline constexpr std::string_view kDomainsKey = "sipr:domains";
inline constexpr std::string_view kAuthFailPrefix = "sipr:authfail:";
inline constexpr std::string_view kNonceCountPrefix = "sipr:nc:";
inline constexpr std::string_view kNonceRequestPrefix = "sipr:ncreq:";
// Registration events and counts (src/location/README.md, "Events" and "Counts"), kept by
// register.lua on one node or a Sentinel-followed primary. Redis Cluster gets the events on the
// Pub/Sub channel kEventsChannel instead, and no counts.
inline constexpr std::string_view kEventsKey = "sipr:events";  // stream, MAXLEN ~ 100000
inline constexpr std::string_view kStatsKey = "sipr:stats";    // hash: aors, bindings
inline constexpr std::string_view kExpiryKey = "sipr:expiry";  // zset: aor -> expiry*1024 + n
inline constexpr std::string_view kEventsChannel = "sipr:events";
// The event format's version (the `v` field).
inline constexpr std::string_view kEventVersion = "1";

// How register.lua publishes its event: XADD to kEventsKey (with the counts and the expiry index)
// where every key can be in one script, PUBLISH on kEventsChannel (Redis Cluster), or not at all
// (Off: sip-registrard --events off; no counts either).
enum class EventDelivery : uint8_t { Stream, Channel, Off };

// "sipr:loc:{<aor>}"
[[nodiscard]] std::string location_key(std::string_view aor);
// "sipr:sub:{<aor>}"
[[nodiscard]] std::string subscriber_key(std::string_view aor);
// "sipr:authfail:{<aor>}:<source>": failed digest authentications of the AOR from one source
// (auth_source() of digest_auth.h) in the current window.
[[nodiscard]] std::string auth_fail_key(std::string_view aor, std::string_view source);
// "sipr:nc:{<aor>}:<nonce>": the highest nonce-count seen with that nonce for the AOR.
[[nodiscard]] std::string nonce_count_key(std::string_view aor, std::string_view nonce);
// Writes "sipr:loc:{<aor>}" into `out` without allocating; returns the length or 0 if too small.
[[nodiscard]] std::size_t write_location_key(std::string_view aor, char* out,
                                             std::size_t cap) noexcept;

// The Lua script behind RegisterStore::apply_register (DESIGN §5, §6). KEYS[1] = location key,
// then (EventDelivery::Stream) kEventsKey, kStatsKey, kExpiryKey. ARGV: max_contacts, evict(0|1),
// flags (1 remove all, +2 retransmission, +4 by the operator, +8 the sweep, +16 events off),
// call_id, cseq, triples (key, expires_s, tail) per contact. Returns {now_ms, field1, packed1, ...}
// or an error reply "STALE ..." / "TOOMANY ...". Every change it makes appends one event
// (register.lua's header).
[[nodiscard]] std::string_view register_script() noexcept;
// Appends register.lua's numkeys, KEYS and ARGV for `changes` to `out`, in the order above: the
// one place that lays them out (RedisStore, Admin). out[first + 1] is the location key (the key
// that routes the command).
void register_script_args(const RegisterChanges& changes, EventDelivery delivery,
                          std::vector<std::string>& out);

// The scripts behind AuthStore (auth_store.h); each file's header comment states its keys,
// arguments and reply.
[[nodiscard]] std::string_view auth_fetch_script() noexcept;    // auth_fetch.lua
[[nodiscard]] std::string_view auth_failure_script() noexcept;  // auth_failure.lua
[[nodiscard]] std::string_view nonce_count_script() noexcept;   // nonce_count.lua

}  // namespace sipr::location
