#include "sipr/location/redis_cluster.h"

#include <charconv>
#include <new>

namespace sipr::location {

namespace {

constexpr std::array<uint16_t, 256> make_crc16_table() noexcept {
    std::array<uint16_t, 256> t{};
    for (unsigned i = 0; i < 256; ++i) {
        uint16_t crc = static_cast<uint16_t>(i << 8);
        for (int b = 0; b < 8; ++b)
            crc = (crc & 0x8000) != 0 ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                                      : static_cast<uint16_t>(crc << 1);
        t[i] = crc;
    }
    return t;
}
constexpr std::array<uint16_t, 256> kCrc16 = make_crc16_table();

constexpr uint64_t kRefreshDebounceMs = 100;  // at most ten map fetches a second on demand
constexpr uint64_t kTickMs = 50;

bool parse_port(std::string_view text, uint16_t& port) noexcept {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size() || v == 0 || v > 65535) return false;
    port = static_cast<uint16_t>(v);
    return true;
}

}  // namespace

uint16_t crc16_xmodem(std::string_view data) noexcept {
    uint16_t crc = 0;
    for (char c : data)
        crc = static_cast<uint16_t>((crc << 8) ^
                                    kCrc16[((crc >> 8) ^ static_cast<uint8_t>(c)) & 0xff]);
    return crc;
}

uint16_t key_slot(std::string_view key) noexcept {
    std::size_t open = key.find('{');
    if (open != std::string_view::npos) {
        std::size_t close = key.find('}', open + 1);
        if (close != std::string_view::npos && close > open + 1)
            key = key.substr(open + 1, close - open - 1);
    }
    return static_cast<uint16_t>(crc16_xmodem(key) & (kClusterSlots - 1));
}

bool parse_cluster_redirect(std::string_view error, ClusterRedirect& out) {
    if (error.substr(0, 6) == "MOVED ") {
        out.ask = false;
        error.remove_prefix(6);
    } else if (error.substr(0, 4) == "ASK ") {
        out.ask = true;
        error.remove_prefix(4);
    } else {
        return false;
    }
    std::size_t sp = error.find(' ');
    if (sp == std::string_view::npos) return false;
    unsigned slot = 0;
    auto [p, ec] = std::from_chars(error.data(), error.data() + sp, slot);
    if (ec != std::errc() || p != error.data() + sp || slot >= kClusterSlots) return false;
    std::string_view where = error.substr(sp + 1);
    std::size_t colon = where.rfind(':');
    if (colon == std::string_view::npos) return false;
    std::string_view host = where.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (!parse_port(where.substr(colon + 1), out.to.port)) return false;
    out.slot = static_cast<uint16_t>(slot);
    out.to.host.assign(host);
    return true;
}

bool parse_cluster_slots(const redisReply* reply, const RedisEndpoint& asked,
                         std::vector<SlotRange>& out) {
    out.clear();
    if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY) return false;
    for (std::size_t i = 0; i < reply->elements; ++i) {
        const redisReply* r = reply->element[i];
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
            r->element[0]->type != REDIS_REPLY_INTEGER ||
            r->element[1]->type != REDIS_REPLY_INTEGER || r->element[2]->type != REDIS_REPLY_ARRAY)
            return false;
        long long first = r->element[0]->integer, last = r->element[1]->integer;
        if (first < 0 || last < first || last >= kClusterSlots) return false;
        const redisReply* node = r->element[2];
        if (node->elements < 2 || node->element[0]->type != REDIS_REPLY_STRING ||
            node->element[1]->type != REDIS_REPLY_INTEGER || node->element[1]->integer <= 0 ||
            node->element[1]->integer > 65535)
            return false;
        SlotRange range;
        range.first = static_cast<uint16_t>(first);
        range.last = static_cast<uint16_t>(last);
        range.primary.host.assign(node->element[0]->str, node->element[0]->len);
        if (range.primary.host.empty() || range.primary.host == "?")
            range.primary.host = asked.host;
        range.primary.port = static_cast<uint16_t>(node->element[1]->integer);
        out.push_back(std::move(range));
    }
    return true;
}

RedisCluster::RedisCluster(uv_loop_t* loop, const RedisTarget& target, RedisOptions opts,
                           ClusterMetrics metrics, ClusterOptions copts)
    : loop_(loop), target_(target), opts_(std::move(opts)), metrics_(metrics), copts_(copts) {
    slots_.fill(kNoNode);
    for (const RedisEndpoint& seed : target_.seeds) node_for(seed);
}

RedisCluster::~RedisCluster() = default;

RedisCluster::Node* RedisCluster::node_for(const RedisEndpoint& where) noexcept {
    for (auto& n : nodes_)
        if (n->where == where) return n.get();
    if (nodes_.size() >= kNoNode) return nullptr;
    auto n = std::make_unique<Node>();
    n->owner = this;
    n->index = static_cast<uint16_t>(nodes_.size());
    n->where = where;
    RedisUrl url;
    url.host = where.host;
    url.port = where.port;
    url.user = target_.url.user;
    url.password = target_.url.password;
    n->url = url;
    n->client = std::make_unique<RedisClient>(loop_, std::move(url), opts_);
    n->client->on_state(&RedisCluster::on_node_state, n.get());
    nodes_.push_back(std::move(n));
    Node* added = nodes_.back().get();
    if (observer_ != nullptr) observer_->node_added(added->index, *added->client, added->url);
    if (started_ && !stopped_) added->client->start();
    return added;
}

void RedisCluster::start() noexcept {
    if (started_) return;
    started_ = true;
    uv_timer_init(loop_, &timer_);
    timer_.data = this;
    uv_timer_start(
        &timer_,
        [](uv_timer_t* t) {
            auto* self = static_cast<RedisCluster*>(t->data);
            const uint64_t now = uv_now(self->loop_);
            if (!self->have_map_ ||
                (self->refresh_due_ && now >= self->last_refresh_ms_ + kRefreshDebounceMs) ||
                now >= self->last_refresh_ms_ + self->copts_.refresh_ms)
                self->refresh();
        },
        kTickMs, kTickMs);
    for (auto& n : nodes_) n->client->start();
}

void RedisCluster::stop() noexcept {
    if (stopped_) return;
    stopped_ = true;
    if (started_) uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    for (auto& n : nodes_) n->client->stop();
}

const RedisEndpoint* RedisCluster::slot_owner(uint16_t slot) const noexcept {
    if (slot >= kClusterSlots || slots_[slot] == kNoNode) return nullptr;
    return &nodes_[slots_[slot]]->where;
}

RedisCluster::Op* RedisCluster::acquire() noexcept {
    Op* op = ops_.acquire();
    op->owner = this;
    return op;
}

void RedisCluster::release(Op* op) noexcept {
    op->fn = nullptr;
    op->ctx = nullptr;
    ops_.release(op);
}

RedisError RedisCluster::command(std::string_view key, bool, int argc, const char* const* argv,
                                 const std::size_t* lens, RedisClient::ReplyFn fn,
                                 void* ctx) noexcept {
    if (stopped_ || argc <= 0) return RedisError::Unavailable;
    const uint16_t slot = key_slot(key);
    const uint16_t idx = slots_[slot];
    if (idx == kNoNode || !nodes_[idx]->client->ready()) {
        // Its primary is gone or unknown: a replica may have been promoted meanwhile. Fetch the
        // map again (at most ten times a second) rather than wait for the periodic refresh.
        refresh_soon();
        return RedisError::Unavailable;
    }
    Op* op = acquire();
    std::size_t bound = 16;
    for (int i = 0; i < argc; ++i) bound += lens[i] + 32;
    op->resp.resize(bound);
    const std::size_t n = format_resp(argc, argv, lens, op->resp.data(), bound);
    op->resp.resize(n);  // shrinking keeps the capacity
    op->fn = fn;
    op->ctx = ctx;
    op->slot = slot;
    op->redirects = 0;
    RedisError err = send(op, nodes_[idx].get(), false);
    if (err != RedisError::None) release(op);
    return err;
}

RedisError RedisCluster::send(Op* op, Node* node, bool asking) noexcept {
    op->node = node->index;
    if (asking) {
        const char* argv[1] = {"ASKING"};
        std::size_t lens[1] = {6};
        RedisError e = node->client->command(1, argv, lens, &RedisCluster::on_asking, nullptr);
        if (e != RedisError::None) return e;
    }
    return node->client->command_resp(op->resp, &RedisCluster::on_reply, op);
}

void RedisCluster::on_reply(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* op = static_cast<Op*>(ctx);
    RedisCluster* self = op->owner;
    if (err == RedisError::None && reply->type == REDIS_REPLY_ERROR && !self->stopped_) {
        std::string_view text(reply->str, reply->len);
        ClusterRedirect r;
        const bool redirect = parse_cluster_redirect(text, r);
        if (redirect && r.to.host.empty()) r.to.host = self->nodes_[op->node]->where.host;
        if (redirect) {
            (r.ask ? self->metrics_.ask : self->metrics_.moved).inc();
            Node* to = self->node_for(r.to);
            if (!r.ask) {
                if (to != nullptr && self->slots_[r.slot] != to->index) {
                    self->slots_[r.slot] = to->index;
                    if (self->observer_ != nullptr) self->observer_->map_changed();
                }
                self->refresh_soon();
            }
            if (to != nullptr && op->redirects < kMaxRedirects && to->client->ready()) {
                ++op->redirects;
                if (self->send(op, to, r.ask) == RedisError::None) return;
            }
            self->last_error_ = "could not follow " + std::string(text);
            err = RedisError::Disconnected;  // the caller answers 503
        } else if (text.substr(0, 11) == "CLUSTERDOWN" || text.substr(0, 8) == "TRYAGAIN") {
            self->refresh_soon();
            err = RedisError::Disconnected;
        }
    }
    RedisClient::ReplyFn fn = op->fn;
    void* user = op->ctx;
    self->release(op);
    if (fn != nullptr) fn(user, err, err == RedisError::None ? reply : nullptr);
}

void RedisCluster::refresh_soon() noexcept {
    refresh_due_ = true;
}

void RedisCluster::refresh() noexcept {
    if (refresh_in_flight_ || stopped_ || nodes_.empty()) return;
    // Ask the next Ready node, round robin: a node cut off from the others cannot keep feeding
    // us its stale view.
    for (std::size_t k = 0; k < nodes_.size(); ++k) {
        Node* n = nodes_[(next_refresh_node_ + k) % nodes_.size()].get();
        if (!n->client->ready()) continue;
        const char* argv[2] = {"CLUSTER", "SLOTS"};
        std::size_t lens[2] = {7, 5};
        if (n->client->command(2, argv, lens, &RedisCluster::on_slots, this) != RedisError::None)
            continue;
        next_refresh_node_ = (n->index + 1u) % nodes_.size();
        refresh_in_flight_ = true;
        refresh_node_ = n;
        refresh_due_ = false;
        last_refresh_ms_ = uv_now(loop_);
        return;
    }
}

void RedisCluster::on_slots(void* ctx, RedisError err, const redisReply* reply) noexcept {
    auto* self = static_cast<RedisCluster*>(ctx);
    self->refresh_in_flight_ = false;
    if (self->stopped_) return;
    if (err != RedisError::None) {
        self->last_error_ = "CLUSTER SLOTS: no answer";
        return;
    }
    const bool ok = parse_cluster_slots(reply, self->refresh_node_->where, self->scratch_ranges_);
    if (!ok || self->scratch_ranges_.empty()) {
        // A node not (yet) in a cluster, or one that lost its slots: ask another next time.
        self->last_error_ = reply->type == REDIS_REPLY_ERROR
                                ? "CLUSTER SLOTS: " + std::string(reply->str, reply->len)
                                : std::string("CLUSTER SLOTS: no slots served");
        self->refresh_soon();
        return;
    }
    std::array<uint16_t, kClusterSlots> fresh;
    fresh.fill(kNoNode);
    for (const SlotRange& r : self->scratch_ranges_) {
        Node* n = self->node_for(r.primary);
        if (n == nullptr) continue;
        for (uint32_t s = r.first; s <= r.last; ++s) fresh[s] = n->index;
    }
    const bool changed = fresh != self->slots_;
    self->slots_ = fresh;
    self->have_map_ = true;
    ++self->refreshes_;
    if (changed && self->observer_ != nullptr) self->observer_->map_changed();
    self->update_ready();
}

void RedisCluster::on_node_state(void* ctx, RedisClient::State s) noexcept {
    auto* node = static_cast<Node*>(ctx);
    RedisCluster* self = node->owner;
    if (self->stopped_) return;
    if (s == RedisClient::State::Backoff || (s == RedisClient::State::Ready && !self->have_map_))
        self->refresh_soon();
    if (self->observer_ != nullptr) self->observer_->node_state(node->index, s);
    self->update_ready();
}

void RedisCluster::observe(ClusterObserver* observer) noexcept {
    observer_ = observer;
    if (observer_ == nullptr) return;
    for (auto& n : nodes_) observer_->node_added(n->index, *n->client, n->url);
}

bool RedisCluster::serves_slots(uint16_t node) const noexcept {
    if (!have_map_) return false;
    for (uint16_t idx : slots_)
        if (idx == node) return true;
    return false;
}

void RedisCluster::update_ready() noexcept {
    bool ready = false;
    if (have_map_) {
        for (auto& n : nodes_) {
            if (!n->client->ready()) continue;
            for (uint16_t idx : slots_) {
                if (idx == n->index) {
                    ready = true;
                    break;
                }
            }
            if (ready) break;
        }
    }
    if (ready == ready_) return;
    ready_ = ready;
    if (!ready && last_error_.empty()) last_error_ = "no primary of the slot map is reachable";
    if (ready) last_error_.clear();
    if (state_fn_ != nullptr)
        state_fn_(state_ctx_, ready ? RedisClient::State::Ready : RedisClient::State::Backoff);
}

}  // namespace sipr::location
