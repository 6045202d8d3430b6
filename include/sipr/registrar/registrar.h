#pragma once
// The REGISTER service of DESIGN §5 (RFC 3261 §10.3), against the RegisterStore interface. Pure
// logic: it never touches sockets or Redis directly, so it is unit-tested with a fake store.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/base/op_pool.h"
#include "sipr/base/siphash.h"
#include "sipr/location/store.h"
#include "sipr/registrar/stats.h"
#include "sipr/sip/intake.h"
#include "sipr/sip/stats.h"

namespace sipr::registrar {

struct Config {
    std::vector<std::string> domains;  // served domains, lower-case; empty serves all
    uint32_t min_expires = 60;
    uint32_t max_expires = 3600;
    uint32_t default_expires = 3600;
    uint32_t max_contacts = 10;
    bool evict_oldest = false;       // --max-contacts-policy evict
    uint32_t retry_after_s = 5;      // in 500 (stale CSeq) and 503 answers
    std::size_t max_message = 8192;  // beyond: 513
    std::size_t max_headers = 96;
    std::size_t max_pending = 4096;   // REGISTERs waiting for Redis per worker; beyond: 503
    std::size_t max_response = 1300;  // largest answer over UDP (RFC 3261 §18.1.1), 512..65000
    // Largest answer over a stream (TCP), 512..65000: the 200 lists every binding up to it; no
    // amplification guard there (a connection's source address is not spoofed).
    std::size_t max_response_stream = 65000;
    // No answer to a source outside --allow is larger than this many times its request (the
    // reflection guard, as in sip-redirectd); 0 turns it off.
    double max_amplification = 3.0;
    base::SipKey tag_key;
};

// The seam of authentication (DESIGN §5, RFC 3261 §10.3 steps 3-4): decides, before any binding
// changes, whether a REGISTER may proceed. Implementations may need the store (digest_auth.h), so
// a decision may come later, on the same loop.
class Authenticator {
  public:
    virtual ~Authenticator() = default;
    enum class Verdict : uint8_t {
        Allow,       // go on with the REGISTER
        Challenge,   // 401 + the WWW-Authenticate lines: no credentials for us, or a stale nonce
        Reject,      // 401 + the WWW-Authenticate lines: the credentials were refused (a failure)
        Forbidden,   // 403: not the AOR's owner, disabled, or locked out (a failure)
        BadRequest,  // 400: the credentials' uri is not the Request-URI (RFC 7616 §3.4.6)
        // Go on, but as a retransmission of a REGISTER already authenticated and applied: answer
        // it from the bindings as they are, writing nothing (RegisterChanges::retransmission).
        Retransmission,
        Unavailable,  // 503 + Retry-After: what the decision needs could not be read
        Pending,      // decided later: `done` runs
    };
    using Done = void (*)(void* ctx, Verdict verdict) noexcept;
    // Decides on the REGISTER `msg` (parsed from `bytes`, the whole datagram, received from
    // `from`) for the normalised `aor`. Writes the headers of the answer (WWW-Authenticate lines)
    // into `extra_headers`, cleared first. Returns the verdict, or Pending: then `done(ctx,
    // verdict)` runs exactly once, later, on the same loop, with a verdict other than Pending, and
    // until it has run `msg`, `core`, `bytes`, `from`, `aor` and `extra_headers` stay valid and
    // unchanged (the registrar keeps them in the REGISTER's slot). Otherwise `done` never runs.
    virtual Verdict check(const sip::Message& msg, const sip::RequestCore& core,
                          std::string_view bytes, const sip::Peer& from, std::string_view aor,
                          std::string& extra_headers, Done done, void* ctx) noexcept = 0;
};

class Registrar {
  public:
    // `store` and `sender` are not owned and must outlive the registrar; `messages` and `stats`
    // are this worker's.
    Registrar(Config config, location::RegisterStore& store, sip::Sender& sender,
              sip::MessageStats& messages, RegistrarStats& stats);
    ~Registrar();
    Registrar(const Registrar&) = delete;
    Registrar& operator=(const Registrar&) = delete;

    // Handles one datagram, or one message framed from a stream connection (from.transport Tcp:
    // the answer may be up to config.max_response_stream). `bytes` need live only during the
    // call: a REGISTER that waits for the store is copied into a slot first. `trusted`: the source
    // is a trusted peer (in --allow), so the amplification guard does not apply to its answers.
    void on_datagram(std::string_view bytes, const sip::Peer& from, bool trusted = false) noexcept;

    // The largest answer to a request of `request_size` bytes: max_response, or less under the
    // amplification guard for an untrusted source.
    [[nodiscard]] std::size_t response_limit(std::size_t request_size, bool trusted) const noexcept;

    void set_authenticator(Authenticator* auth) noexcept { auth_ = auth; }

    // REGISTERs waiting for the store or the authenticator.
    [[nodiscard]] std::size_t pending() const noexcept { return pending_; }

  private:
    struct Slot;
    void handle_register(const sip::Message& msg, const sip::RequestCore& core,
                         std::string_view bytes, const sip::Peer& from, std::size_t limit) noexcept;
    // Answers `slot`'s REGISTER as `verdict` says (anything but Allow and Pending) and frees it.
    void refuse(Slot* slot, Authenticator::Verdict verdict) noexcept;
    static void on_authenticated(void* ctx, Authenticator::Verdict verdict) noexcept;
    // §10.3 steps 5-7 for an authorised REGISTER in `slot`: its changes go to the store.
    void store_register(Slot* slot) noexcept;
    // Writes and sends one answer of at most `limit` bytes; one that does not fit is a counted
    // drop (response_too_large).
    void respond(const sip::Message& msg, const sip::RequestCore& core, const sip::Peer& to,
                 std::size_t limit, uint16_t status, std::string_view reason,
                 std::string_view extra) noexcept;
    bool serves(std::string_view host) const noexcept;
    // "Retry-After: <config.retry_after_s>\r\n", for 500 and 503 answers.
    std::string_view retry_after_line() noexcept;
    static void on_stored(void* ctx, const location::RegisterReply& reply) noexcept;
    void finish(Slot* slot, const location::RegisterReply& reply) noexcept;

    Config config_;
    location::RegisterStore& store_;
    sip::Sender& sender_;
    sip::MessageStats& messages_;
    RegistrarStats& stats_;
    Authenticator* auth_ = nullptr;
    base::OpPool<Slot> slots_;  // at most config_.max_pending in use
    std::size_t pending_ = 0;
    // Scratch for the datagram being handled and for the response being written (per worker: no
    // thread_local, which would bloat every thread's static TLS, civetweb's too).
    std::unique_ptr<sip::Message> msg_;
    sip::RequestCore core_;
    std::vector<char> out_;
    std::array<char, 32> retry_after_{};
    // Where to write a response of at most `limit` bytes: the sender's own buffer when it has one
    // (no copy on send), else out_.
    std::span<char> response_buffer(std::size_t limit) noexcept;
};

// "Sat, 13 Nov 2010 23:29:00 GMT" (RFC 3261 §20.17, RFC 1123 date) for unix milliseconds.
[[nodiscard]] std::string format_sip_date(int64_t unix_ms);

// The q-value text of thousandths: 1000 -> "1", 500 -> "0.5", 123 -> "0.123".
[[nodiscard]] std::string format_q(uint16_t q);

// The binding key (location::binding_key) of a contact parsed as `uri` from `uri_text`, with its
// +sip.instance ("" when none).
[[nodiscard]] std::string contact_key(const sip::Uri& uri, std::string_view uri_text,
                                      std::string_view instance = {});

}  // namespace sipr::registrar
