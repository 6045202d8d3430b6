#pragma once
// A Redis Cluster client on one uv_loop (DESIGN §7; hiredis 0.14 has none): one RedisClient per
// primary, a slot map from CLUSTER SLOTS, and the redirections of the cluster specification.
//
// - A command goes to the primary of its key's hash slot (key_slot: CRC16 over the {hash tag},
//   so sipr:loc:{aor} and sipr:sub:{aor} share the AOR's slot).
// - "-MOVED <slot> <host:port>": the slot now lives there for good. The map entry is updated at
//   once, the command is sent there, and the whole map is fetched again (several slots moved, as
//   a reshard moves them, are then learnt from one answer).
// - "-ASK <slot> <host:port>": this key is being migrated; the command is sent there once,
//   preceded by ASKING, and the map is left as it is.
// - A slot whose primary is unknown or not Ready refuses the command (Unavailable: the caller
//   answers 503); so does a command redirected more than kMaxRedirects times.
// - The map is fetched at start, on every MOVED, whenever a primary's connection is lost, while
//   commands meet a slot whose primary is not Ready (at most ten times a second: a promoted
//   replica is learnt within 100 ms), and every refresh_ms; from any Ready node, the seeds
//   included.
//
// The command is kept as RESP text in a pooled op, so a redirection can send it again: no heap
// allocation per command once the pool is warm.
#include <uv.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/base/op_pool.h"
#include "sipr/base/stats.h"
#include "sipr/location/redis_client.h"
#include "sipr/location/redis_route.h"

namespace sipr::location {

inline constexpr uint16_t kClusterSlots = 16384;

// CRC16-CCITT (XMODEM), as the cluster specification defines it.
[[nodiscard]] uint16_t crc16_xmodem(std::string_view data) noexcept;
// The hash slot of `key`: CRC16 of the text between the first '{' and the first '}' after it when
// that is not empty, else of the whole key; mod 16384.
[[nodiscard]] uint16_t key_slot(std::string_view key) noexcept;

// A parsed "-MOVED 3999 127.0.0.1:6381" or "-ASK ..." error.
struct ClusterRedirect {
    bool ask = false;
    uint16_t slot = 0;
    RedisEndpoint to;
};
// Parses a redirection error's text ("MOVED ..." / "ASK ..."); false for any other text. An empty
// host (a node that does not know its own address) is left empty: the caller knows whom it asked.
[[nodiscard]] bool parse_cluster_redirect(std::string_view error, ClusterRedirect& out);

// One range of CLUSTER SLOTS: slots [first, last] served by `primary`.
struct SlotRange {
    uint16_t first = 0;
    uint16_t last = 0;
    RedisEndpoint primary;
};
// Parses a CLUSTER SLOTS reply. An empty primary host means "the node you asked" (`asked`).
// False when the reply is not that shape.
[[nodiscard]] bool parse_cluster_slots(const redisReply* reply, const RedisEndpoint& asked,
                                       std::vector<SlotRange>& out);

struct ClusterOptions {
    uint32_t refresh_ms = 2000;  // fetch the slot map at least this often
};

struct ClusterMetrics {
    base::Counter& moved;  // -MOVED followed
    base::Counter& ask;    // -ASK followed
};

// Told of a cluster's nodes and slot map (a ClusterCacheTracker keeps one tracker per node): a node
// added, with its connection and URL (at once, in observe(), for the nodes already known); a
// node's connection changing state; the slot map changing (which nodes serve slots).
class ClusterObserver {
  public:
    virtual void node_added(uint16_t node, RedisClient& client, const RedisUrl& url) noexcept = 0;
    virtual void node_state(uint16_t node, RedisClient::State s) noexcept = 0;
    virtual void map_changed() noexcept = 0;

  protected:
    ~ClusterObserver() = default;
};

class RedisCluster final : public RedisRoute {
  public:
    static constexpr uint8_t kMaxRedirects = 5;
    static constexpr uint16_t kNoNode = 0xffff;

    // `target` (RedisMode::Cluster) gives the seeds and the password; `opts` configure every
    // node's connection; `metrics` (not owned) count redirections.
    RedisCluster(uv_loop_t* loop, const RedisTarget& target, RedisOptions opts,
                 ClusterMetrics metrics, ClusterOptions copts = {});
    ~RedisCluster() override;
    RedisCluster(const RedisCluster&) = delete;
    RedisCluster& operator=(const RedisCluster&) = delete;

    void start() noexcept;
    // Stops every connection and the timer; the object may be destroyed once the loop ran the
    // close callbacks.
    void stop() noexcept;

    [[nodiscard]] RedisError command(std::string_view key, bool read, int argc,
                                     const char* const* argv, const std::size_t* lens,
                                     RedisClient::ReplyFn fn, void* ctx) noexcept override;
    // A slot map is known and at least one of its primaries is Ready (a node down costs its own
    // slots a 503 each, not the whole instance its place behind the load balancer).
    [[nodiscard]] bool ready() const noexcept override { return ready_; }

    // Told when ready() changes (Ready / Backoff), like a RedisClient's state.
    void on_state(RedisClient::StateFn fn, void* ctx) noexcept {
        state_fn_ = fn;
        state_ctx_ = ctx;
    }
    [[nodiscard]] const std::string& last_error() const noexcept { return last_error_; }

    // Sets the one observer (nullptr: none); it must outlive this or be reset before it goes.
    void observe(ClusterObserver* observer) noexcept;
    // Whether node `node` (an index given to node_added) serves at least one slot of the map.
    [[nodiscard]] bool serves_slots(uint16_t node) const noexcept;
    [[nodiscard]] bool node_ready(uint16_t node) const noexcept {
        return node < nodes_.size() && nodes_[node]->client->ready();
    }

    // The primary serving `slot` (for tests and logs); nullptr when unknown.
    [[nodiscard]] const RedisEndpoint* slot_owner(uint16_t slot) const noexcept;
    [[nodiscard]] std::size_t nodes() const noexcept { return nodes_.size(); }
    [[nodiscard]] uint64_t map_refreshes() const noexcept { return refreshes_; }

  private:
    struct Node {
        RedisCluster* owner = nullptr;
        uint16_t index = 0;
        RedisEndpoint where;
        RedisUrl url;
        std::unique_ptr<RedisClient> client;
    };
    struct Op {
        RedisCluster* owner = nullptr;
        RedisClient::ReplyFn fn = nullptr;
        void* ctx = nullptr;
        uint16_t slot = 0;
        uint16_t node = 0;  // where it was sent last
        uint8_t redirects = 0;
        std::string resp;  // the command as RESP; keeps its capacity across uses
    };

    Node* node_for(const RedisEndpoint& where) noexcept;  // finds or adds (and starts) one
    Op* acquire() noexcept;
    void release(Op* op) noexcept;
    RedisError send(Op* op, Node* node, bool asking) noexcept;
    void refresh_soon() noexcept;
    void refresh() noexcept;
    void update_ready() noexcept;
    static void on_reply(void* ctx, RedisError err, const redisReply* reply) noexcept;
    static void on_slots(void* ctx, RedisError err, const redisReply* reply) noexcept;
    static void on_node_state(void* ctx, RedisClient::State s) noexcept;
    static void on_asking(void*, RedisError, const redisReply*) noexcept {}

    uv_loop_t* loop_;
    RedisTarget target_;
    RedisOptions opts_;
    ClusterMetrics metrics_;
    ClusterOptions copts_;
    std::vector<std::unique_ptr<Node>> nodes_;
    std::array<uint16_t, kClusterSlots> slots_;
    bool have_map_ = false;
    bool ready_ = false;
    bool started_ = false;
    bool stopped_ = false;
    bool refresh_in_flight_ = false;
    bool refresh_due_ = false;
    Node* refresh_node_ = nullptr;  // whom the slot map was asked of
    std::size_t next_refresh_node_ = 0;
    uint64_t refreshes_ = 0;
    uint64_t last_refresh_ms_ = 0;
    uv_timer_t timer_{};
    base::OpPool<Op> ops_;
    std::vector<SlotRange> scratch_ranges_;
    RedisClient::StateFn state_fn_ = nullptr;
    void* state_ctx_ = nullptr;
    ClusterObserver* observer_ = nullptr;
    std::string last_error_;
};

}  // namespace sipr::location
