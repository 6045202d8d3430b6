#pragma once
// The redirect service of DESIGN §4: a request and the bindings of its AOR in, a 302 / 404 / 503
// (or another answer, or nothing) out. The decision and the response writing are pure functions
// (unit-tested rule by rule); Redirector wires them to a LookupStore and a Sender.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/base/op_pool.h"
#include "sipr/base/siphash.h"
#include "sipr/location/store.h"
#include "sipr/redirect/stats.h"
#include "sipr/sip/aor.h"
#include "sipr/sip/intake.h"
#include "sipr/sip/stats.h"

namespace sipr::redirect {

struct Config {
    std::vector<std::string> domains;      // served domains, lower-case; empty serves all
    std::string default_domain;            // tel: URIs map here (DESIGN §4); "" answers them 404
    bool path_as_route = false;            // a binding's Path as ?Route= on its Contact (opt-in)
    bool reject_max_forwards_zero = true;  // Max-Forwards: 0 -> 483 (RFC 3261 §16.3 spirit)
    bool health_ignores_redis = false;     // OPTIONS probe answers 200 even without Redis
    std::size_t max_response = 1300;       // a 302 fits one datagram (RFC 3261 §18.1.1)
    // Over a stream (TCP) the 302 lists every contact up to this many bytes; no amplification
    // guard applies there (a connection's source address is not spoofed).
    std::size_t max_response_stream = 65000;
    // Reflection guard: no answer to an untrusted source is larger than this many times the
    // request that caused it (a 302 loses its lowest-q contacts to fit). 0: off.
    double max_amplification = 3.0;
    std::size_t max_message = 8192;  // larger requests get 513
    std::size_t max_headers = 96;
    std::size_t max_inflight = 1024;  // look-ups per worker; beyond: 503 at once
    uint32_t retry_after_s = 5;
    base::SipKey tag_key;
};

enum class Step : uint8_t {
    Drop,     // nothing to answer; count `drop`
    Absorb,   // ACK: no answer (RFC 3261 §17.2.1: the 302's transaction absorbs it)
    Respond,  // answer now with status / reason / extra
    Lookup,   // look the AOR up, then write_redirect()
};

struct Decision {
    Step step = Step::Drop;
    base::DropReason drop = base::DropReason::NotSip;
    uint16_t status = 0;
    std::string_view reason;
    std::string_view extra;  // whole header lines: static text, or in the caller's AOR buffer
    std::string_view aor;    // for Lookup: points into the caller's AOR buffer
};

// Classifies one datagram in the order of DESIGN §4. `msg`, `core` and `aor_buf` are the caller's
// storage (views point into `bytes` and `aor_buf`). `store_available` and `draining` answer the
// health probe: 200 only while the store is available (or config.health_ignores_redis) and the
// instance is not draining (shutting down after SIGTERM); every other request is decided the same
// either way.
[[nodiscard]] Decision decide(const Config& config, std::string_view bytes, sip::Message& msg,
                              sip::RequestCore& core, std::span<char, sip::kMaxAorLength> aor_buf,
                              bool store_available, bool draining = false) noexcept;

// What the store said about the AOR.
struct LookupOutcome {
    location::StoreError error = location::StoreError::None;
    std::span<const location::BindingView> bindings;
    int64_t now_ms = 0;  // wall clock, for remaining seconds and expiry
};

struct WriteResult {
    std::string_view response;  // empty when even a bare response did not fit
    uint16_t status = 0;
    std::size_t contacts = 0;  // Contacts written
    std::size_t cut = 0;       // live contacts left out to fit max_response
};

// Writes the answer to a looked-up request: 302 with one Contact per live binding (highest q
// first, then most recently registered; duplicates and the Request-URI itself left out; each with
// ;q= and ;expires=), 404 when none is left, 503 + Retry-After on a store error. At most
// `limit` bytes (also bounded by `out`); contacts that do not fit are cut lowest q first.
[[nodiscard]] WriteResult write_redirect(const Config& config, const sip::Message& msg,
                                         const sip::RequestCore& core, const LookupOutcome& found,
                                         const sip::Source& source, std::size_t limit,
                                         std::span<char> out) noexcept;

// Escapes a header value for use inside a URI header (RFC 3261 §19.1.1 hvalue): everything but
// unreserved characters and hnv-unreserved ones becomes %XX. Returns false when it did not fit.
[[nodiscard]] bool append_uri_header_escaped(base::BufferWriter& w,
                                             std::string_view value) noexcept;

// The service on one worker: copies each datagram into a slot, decides, asks the store, answers.
class Redirector {
  public:
    // `now_us` is a monotonic clock for the look-up latency histogram; `wall_ms` the wall clock.
    // It counts into `messages` and `stats`, which outlive it.
    Redirector(Config config, location::LookupStore& store, sip::Sender& sender,
               sip::MessageStats& messages, RedirectStats& stats, uint64_t (*now_us)() noexcept,
               int64_t (*wall_ms)() noexcept);
    ~Redirector();
    Redirector(const Redirector&) = delete;
    Redirector& operator=(const Redirector&) = delete;

    // Handles one datagram from `from`, or one message framed from `from`'s connection
    // (from.transport Tcp: the answer may be up to config.max_response_stream). `trusted`: the
    // source is a trusted peer (in --allow), so the amplification guard does not apply to its
    // answers. Returns true when the answer is still to come (a look-up in flight): it then
    // goes to the Sender later, exactly once (unless it cannot be written: a counted drop).
    bool on_datagram(std::string_view bytes, const sip::Peer& from, bool trusted = false) noexcept;
    // Answers `status` / `reason` (400, 513) to the request whose head is `head`, a stream
    // message that cannot be framed, when that head holds what a response copies (RFC 3261
    // §8.2.6: Via, From, To, Call-ID, CSeq). Returns whether an answer went to the Sender.
    bool reject(std::string_view head, const sip::Peer& from, uint16_t status,
                std::string_view reason) noexcept;
    [[nodiscard]] std::size_t inflight() const noexcept { return inflight_; }
    // From now on the health probe (OPTIONS to the server) is answered 503, so a load balancer
    // takes the instance out, while every other request is answered as before (graceful drain).
    void set_draining(bool draining) noexcept { draining_ = draining; }

  private:
    struct Slot;
    static void on_lookup(void* ctx, const location::LookupReply& reply) noexcept;
    void finish(Slot* slot, const location::LookupReply& reply) noexcept;
    void respond(Slot& slot, uint16_t status, std::string_view reason,
                 std::string_view extra) noexcept;
    // The largest answer to a request of `request_size` bytes (max_response, or less under the
    // amplification guard).
    [[nodiscard]] std::size_t response_limit(std::size_t request_size, bool trusted,
                                             sip::Transport transport) const noexcept;
    void send(const Slot& slot, std::string_view bytes, uint16_t status) noexcept;
    Slot* acquire() noexcept;
    void release(Slot* slot) noexcept;

    Config config_;
    location::LookupStore& store_;
    sip::Sender& sender_;
    sip::MessageStats& messages_;
    RedirectStats& stats_;
    uint64_t (*now_us_)() noexcept;
    int64_t (*wall_ms_)() noexcept;
    base::OpPool<Slot> slots_;       // at most config_.max_inflight
    std::unique_ptr<Slot> scratch_;  // for datagrams answered at once when every slot is busy
    std::vector<char> out_;
    std::size_t inflight_ = 0;
    Slot* pending_slot_ = nullptr;  // the slot whose lookup() is being called (null once answered)
    bool draining_ = false;
};

}  // namespace sipr::redirect
