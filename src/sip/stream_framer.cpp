#include "sipr/sip/stream_framer.h"

#include <cstring>

#include "sipr/base/ascii.h"
#include "sipr/sip/message.h"

namespace sipr::sip {

namespace {

enum class LengthScan : uint8_t { Missing, Ok, Bad };

// Finds Content-Length (or its compact form l:, through the parser's header_id) in `head`, whose
// first line is the start line and whose last line is empty. A value folded onto the next line
// (RFC 3261 §7.3.1) is read there. A second header with another value is Bad (RFC 4475
// §3.1.2.7-like), as is anything but 1 to 10 decimal digits.
LengthScan scan_content_length(std::string_view head, uint32_t& out) noexcept {
    bool found = false;
    bool in_length = false;    // the previous header line was a Content-Length
    std::string_view pending;  // its value, when still empty it may follow on a folded line
    auto settle = [&](std::string_view value) noexcept {
        uint32_t n = 0;
        if (!base::parse_u32(value, n)) return false;
        if (found && n != out) return false;
        out = n;
        found = true;
        return true;
    };
    std::size_t pos = head.find('\n');
    if (pos == std::string_view::npos) return LengthScan::Missing;
    ++pos;  // past the start line
    while (pos < head.size()) {
        std::size_t nl = head.find('\n', pos);
        if (nl == std::string_view::npos) nl = head.size();
        std::string_view line = head.substr(pos, nl - pos);
        pos = nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) break;  // the blank line ending the head
        if (line[0] == ' ' || line[0] == '\t') {
            if (in_length) {
                std::string_view v = base::trim(line);
                if (!v.empty()) {
                    if (!pending.empty()) return LengthScan::Bad;  // "1\r\n 2"
                    pending = v;
                }
            }
            continue;
        }
        if (in_length && !settle(pending)) return LengthScan::Bad;
        in_length = false;
        std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;  // the parser judges it later
        std::string_view name = line.substr(0, colon);
        while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
        if (header_id(name) != HeaderId::ContentLength) continue;
        in_length = true;
        pending = base::trim(line.substr(colon + 1));
    }
    if (in_length && !settle(pending)) return LengthScan::Bad;
    return found ? LengthScan::Ok : LengthScan::Missing;
}

}  // namespace

std::span<char> StreamFramer::free_space() noexcept {
    if (start_ != 0) {
        // Only a partial message (or the start of a CRLF) is left: move it to the front, so a
        // message up to the buffer's size always fits.
        const std::size_t n = end_ - start_;
        if (n != 0) std::memmove(buf_.data(), buf_.data() + start_, n);
        start_ = 0;
        end_ = n;
    }
    return buf_.subspan(end_);
}

void StreamFramer::commit(std::size_t n) noexcept {
    end_ += n <= buf_.size() - end_ ? n : buf_.size() - end_;
}

void StreamFramer::reset() noexcept {
    start_ = end_ = scanned_ = head_len_ = 0;
    content_length_ = 0;
    error_ = Frame{};
}

Frame StreamFramer::fail(FrameError e, std::string_view head) noexcept {
    error_.kind = FrameKind::Error;
    error_.error = e;
    error_.bytes = head;
    return error_;
}

Frame StreamFramer::next() noexcept {
    if (error_.kind == FrameKind::Error) return error_;
    const char* const b = buf_.data();
    if (head_len_ == 0) {
        // Between messages: CRLFCRLF is a ping (RFC 5626 §3.5.1); a lone CRLF is skipped (RFC
        // 3261 §7.5; RFC 5626's pong from a peer that pings us too).
        while (scanned_ == 0 && end_ - start_ >= 1 && b[start_] == '\r') {
            const std::size_t have = end_ - start_;
            if (have < 2) return Frame{};
            if (b[start_ + 1] != '\n') break;  // a message starting with a bare CR: the parser's
            if (have >= 4 && b[start_ + 2] == '\r' && b[start_ + 3] == '\n') {
                start_ += 4;
                return Frame{FrameKind::Ping, FrameError::None, {}};
            }
            if (have < 3 || (have == 3 && b[start_ + 2] == '\r')) return Frame{};
            start_ += 2;
        }
        if (end_ == start_) return Frame{};
        // The blank line: an LF followed by LF or CRLF (the parser ends lines at a bare LF too).
        std::size_t i = start_ + scanned_;
        for (;;) {
            const void* lf = std::memchr(b + i, '\n', end_ - i);
            if (lf == nullptr) {
                scanned_ = end_ - start_;
                break;
            }
            i = static_cast<std::size_t>(static_cast<const char*>(lf) - b);
            if (i + 1 < end_ && b[i + 1] == '\n') {
                head_len_ = i + 2 - start_;
                break;
            }
            if (i + 2 < end_ && b[i + 1] == '\r' && b[i + 2] == '\n') {
                head_len_ = i + 3 - start_;
                break;
            }
            if (i + 2 >= end_) {  // the bytes after this LF are not all in yet
                scanned_ = i - start_;
                break;
            }
            ++i;
        }
        if (head_len_ == 0) {
            if (end_ - start_ >= buf_.size()) return fail(FrameError::HeadTooLarge, {});
            return Frame{};
        }
        const std::string_view head(b + start_, head_len_);
        uint32_t length = 0;
        switch (scan_content_length(head, length)) {
            case LengthScan::Missing:
                return fail(FrameError::NoContentLength, head);
            case LengthScan::Bad:
                return fail(FrameError::BadContentLength, head);
            case LengthScan::Ok:
                break;
        }
        if (length > buf_.size() - head_len_) return fail(FrameError::MessageTooLarge, head);
        content_length_ = length;
    }
    const std::size_t total = head_len_ + content_length_;
    if (end_ - start_ < total) return Frame{};
    Frame f{FrameKind::Message, FrameError::None, std::string_view(b + start_, total)};
    start_ += total;
    scanned_ = head_len_ = 0;
    content_length_ = 0;
    return f;
}

}  // namespace sipr::sip
