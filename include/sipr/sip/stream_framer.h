#pragma once
// RFC 3261 §18.3 framing of SIP over a stream (TCP, TLS): bytes arrive in any cuts, messages leave
// whole. The framer reads into a buffer the caller owns (one per connection, as large as the
// largest message it accepts) and never allocates or copies except to move a partial message to
// the front of that buffer.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace sipr::sip {

enum class FrameKind : uint8_t {
    NeedMore,  // no complete message yet: read more into free_space()
    Message,   // `bytes` is one whole message, head and body
    Ping,      // a CRLFCRLF keep-alive (RFC 5626 §3.5.1): answer with one CRLF
    Error,     // the stream cannot be framed any further: answer (see FrameError) and close
};

enum class FrameError : uint8_t {
    None,
    HeadTooLarge,      // no blank line within the buffer: no head to answer, close
    MessageTooLarge,   // head + Content-Length beyond the buffer: `bytes` is the head (513)
    NoContentLength,   // the head has none (RFC 3261 §18.3: required on streams): the head (400)
    BadContentLength,  // not a decimal number that fits 32 bits, or two different values (400)
};

struct Frame {
    FrameKind kind = FrameKind::NeedMore;
    FrameError error = FrameError::None;
    // Message: the whole message. Error with a head (MessageTooLarge, NoContentLength,
    // BadContentLength): the head, blank line included, so the caller may parse it and answer.
    // Points into the framer's buffer; valid until the next free_space() or reset().
    std::string_view bytes;
};

class StreamFramer {
  public:
    // `buffer` (not owned) is where bytes are read to and messages are framed in; its size is the
    // largest message accepted. It must outlive the framer.
    explicit StreamFramer(std::span<char> buffer) noexcept : buf_(buffer) {}

    // Where the next read may put its bytes; then commit() how many it put. Moves a partial
    // message to the front of the buffer first, which invalidates every Frame's view. Call it only
    // after next() returned NeedMore: then it is never empty.
    [[nodiscard]] std::span<char> free_space() noexcept;
    // Records that `n` bytes (at most free_space().size()) were written at free_space().
    void commit(std::size_t n) noexcept;

    // The next frame of what has been committed. Message and Ping consume their bytes, so the
    // next call looks at what follows (call it until NeedMore: one read may hold several
    // messages). Lone CRLFs between messages are skipped (RFC 3261 §7.5). Error is final: every
    // later call returns it again.
    [[nodiscard]] Frame next() noexcept;

    // True while a message has begun but its head is not yet complete (the slow-loris deadline
    // runs); false between messages (a CRLF that may begin a ping included) and once the head is
    // in (the body is then being read).
    [[nodiscard]] bool head_pending() const noexcept {
        const std::size_t n = end_ - start_;
        if (head_len_ != 0 || n == 0) return false;
        // Only a prefix of CRLFCRLF: no message has begun.
        return n > 3 || std::string_view(buf_.data() + start_, n) != kPing.substr(0, n);
    }
    // Bytes committed and not yet consumed.
    [[nodiscard]] std::size_t buffered() const noexcept { return end_ - start_; }
    // The largest message accepted: the buffer's size.
    [[nodiscard]] std::size_t capacity() const noexcept { return buf_.size(); }
    // Forgets everything committed and any error.
    void reset() noexcept;

  private:
    static constexpr std::string_view kPing = "\r\n\r\n";
    Frame fail(FrameError e, std::string_view head) noexcept;

    std::span<char> buf_;
    std::size_t start_ = 0;     // first byte not consumed
    std::size_t end_ = 0;       // one past the last byte committed
    std::size_t scanned_ = 0;   // bytes from start_ already searched for the blank line
    std::size_t head_len_ = 0;  // 0: the head is not complete yet
    uint32_t content_length_ = 0;
    Frame error_{};  // kind Error once failed
};

}  // namespace sipr::sip
