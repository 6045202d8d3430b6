#pragma once
// Writes a response to a parsed request into a caller-provided buffer (RFC 3261 §8.2.6): every Via
// in order (the top one with received/rport per §18.2.1 and RFC 3581), From, To with a
// deterministic tag, Call-ID and CSeq copied, then the caller's headers, then Content-Length: 0.
// Never writes past the buffer; reports when the response does not fit.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "sipr/base/buffer_writer.h"
#include "sipr/base/siphash.h"
#include "sipr/sip/message.h"
#include "sipr/sip/request.h"

namespace sipr::sip {

// Where the request came from, for received= and rport= on the top Via. An empty `ip` leaves the
// Via untouched.
struct Source {
    std::string_view ip;  // textual IPv4 or IPv6 address, no brackets
    uint16_t port = 0;
};

inline constexpr std::size_t kToTagLength = 16;

// The To-tag of DESIGN §4: 16 lower-case hex digits of SipHash-2-4 over the Call-ID, the From tag
// and the top Via branch, under `key`. Equal inputs give an equal tag on every instance sharing
// the key.
void make_to_tag(const base::SipKey& key, const RequestCore& core,
                 std::span<char, kToTagLength> out) noexcept;

// Builds a response in steps: begin() writes the status line and the copied headers; the caller
// adds headers with add_header() or raw(); finish() ends the head with Content-Length: 0.
class ResponseWriter {
  public:
    explicit ResponseWriter(std::span<char> buf) noexcept : w_(buf) {}

    // Writes "SIP/2.0 <status> <reason>", the Vias, From, To (tagged unless it already has a
    // tag), Call-ID and CSeq.
    void begin(const Message& req, const RequestCore& core, uint16_t status,
               std::string_view reason, const base::SipKey& tag_key,
               const Source& source = {}) noexcept;
    // Appends "<name>: <value>\r\n".
    void add_header(std::string_view name, std::string_view value) noexcept;
    // Appends bytes as they are; the caller supplies the CRLF.
    void raw(std::string_view bytes) noexcept { w_.append(bytes); }
    // Appends "Content-Length: 0\r\n\r\n". Returns the whole response, or an empty view when it did
    // not fit.
    [[nodiscard]] std::string_view finish() noexcept;

    [[nodiscard]] base::BufferWriter& writer() noexcept { return w_; }
    [[nodiscard]] bool overflow() const noexcept { return w_.overflow(); }

  private:
    base::BufferWriter w_;
};

// One-shot form: begin() + `extra_headers` (whole lines, each ending in CRLF, may be empty) +
// finish(). Returns the response, or an empty view when it does not fit in `buf`.
[[nodiscard]] std::string_view write_response(const Message& req, const RequestCore& core,
                                              uint16_t status, std::string_view reason,
                                              std::string_view extra_headers,
                                              const base::SipKey& tag_key, std::span<char> buf,
                                              const Source& source = {}) noexcept;

// Appends a q-value given in thousandths as the shortest decimal of RFC 3261 §20.10 ("qvalue"):
// 1000 (or more) -> "1", 500 -> "0.5", 123 -> "0.123", 0 -> "0".
void append_q(base::BufferWriter& w, uint16_t q) noexcept;

// The standard reason phrase of RFC 3261 §21 for a status code, or "Unknown".
[[nodiscard]] std::string_view default_reason(uint16_t status) noexcept;

}  // namespace sipr::sip
