#pragma once
// Blocking administration of the location data (DESIGN §6): what sip-locctl and sip-bench
// --populate read and write, in the schema the daemons use (the key names of schema.h, the packed
// binding of binding.h, register.lua's arguments as RedisStore sends them). Never on a loop.
// Every call returns "" or one line saying what failed ("Redis refused <COMMAND>: <why>").
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sipr/location/binding.h"
#include "sipr/location/redis_client.h"
#include "sipr/location/schema.h"
#include "sipr/location/store.h"

namespace sipr::location {

class SyncRedis;

// A subscriber record, sipr:sub:{aor} (DESIGN §6), as the registrar's digest check reads it.
struct SubscriberRecord {
    std::string ha1_md5;     // hex of MD5(user:realm:password)
    std::string ha1_sha256;  // hex of SHA-256(user:realm:password)
    std::string realm;
    // "SHA-256,MD5" (most preferred first); "": the registrar's --auth-algorithms apply.
    std::string algorithms;
};

// One stored binding and its hash field.
struct StoredBinding {
    std::string key;
    Binding binding;
};

class Admin {
  public:
    Admin();
    ~Admin();
    Admin(const Admin&) = delete;
    Admin& operator=(const Admin&) = delete;

    // Connects to `node` (`cluster`: a node of a Redis Cluster; every command then follows -MOVED
    // and -ASK to the node that holds its key, as redis-cli -c does).
    [[nodiscard]] std::string open(const RedisUrl& node, bool cluster, uint32_t timeout_ms);

    // Every binding stored for `aor` (expired ones included), in storage order; `garbage` counts
    // the entries that do not unpack.
    [[nodiscard]] std::string bindings(std::string_view aor, std::vector<StoredBinding>& out,
                                       std::size_t& garbage);
    // Applies `changes` as the registrar does (register.lua); a reply other than the bindings
    // (STALE, TOOMANY) is an error.
    [[nodiscard]] std::string apply(const RegisterChanges& changes);
    // The same; `after` counts the AOR's bindings after the change.
    [[nodiscard]] std::string apply(const RegisterChanges& changes, long long& after);
    // Applies each of `batch` (pipelined, on the connected node only: not for a Cluster).
    [[nodiscard]] std::string apply_many(std::span<const RegisterChanges> batch);
    // Removes the bindings of `aor` under `keys` (none: every binding) through register.lua, as
    // the operator (its event says src=locctl); `removed` counts the bindings that went (expired
    // ones included).
    [[nodiscard]] std::string remove_bindings(std::string_view aor,
                                              std::span<const std::string> keys,
                                              long long& removed);
    // Adds or replaces the subscriber `aor`.
    [[nodiscard]] std::string put_subscriber(std::string_view aor, const SubscriberRecord& r);
    // Deletes the subscriber `aor`; `existed` says whether there was one.
    [[nodiscard]] std::string delete_subscriber(std::string_view aor, bool& existed);

    // Reads the registration events from the stream kEventsKey after `last_id` ("$": only new
    // ones), waiting up to `block_ms`; each is handed to `use(id, fields)` (field/value pairs in
    // stream order) and `last_id` advances. On a Cluster events are Pub/Sub: see subscribe().
    [[nodiscard]] std::string read_events(
        std::string& last_id, uint32_t block_ms,
        const std::function<void(std::string_view id,
                                 const std::vector<std::pair<std::string, std::string>>& fields)>&
            use);

    // Whether events after `id` may have been trimmed from the stream (some were removed and the
    // oldest still held comes after `id`): a consumer resuming there must rescan.
    [[nodiscard]] std::string events_trimmed_after(std::string_view id, bool& trimmed);

    // Subscribes to kEventsChannel (Redis Cluster); then next_message() waits up to `wait_ms` for
    // one message ("" in `out` when none came).
    [[nodiscard]] std::string subscribe_events();
    [[nodiscard]] std::string next_message(uint32_t wait_ms, std::string& out);

    [[nodiscard]] bool cluster() const noexcept { return cluster_; }

  private:
    [[nodiscard]] EventDelivery delivery() const noexcept {
        return cluster_ ? EventDelivery::Channel : EventDelivery::Stream;
    }
    // Runs one command, following Cluster redirects; the reply (non-error) is handed to `use`.
    template <typename Use>
    std::string run(std::span<const std::string_view> args, std::string_view key, Use&& use);

    RedisUrl node_;
    bool cluster_ = false;
    uint32_t timeout_ms_ = 2000;
    std::unique_ptr<SyncRedis> c_;
};

}  // namespace sipr::location
