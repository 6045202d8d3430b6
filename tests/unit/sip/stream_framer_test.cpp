// The RFC 3261 §18.3 stream framer: every stream cut at every byte offset, byte by byte and in
// random chunks frames the same; pipelining, CRLF pings, and each way a stream is refused.
#include <doctest/doctest.h>

#include "support/alloc_counter.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/sip/stream_framer.h"

namespace sipr::sip {
namespace {

const std::string kInvite =
    "INVITE sip:alice@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    "From: <sip:bob@example.com>;tag=1\r\n"
    "To: <sip:alice@example.com>\r\n"
    "Call-ID: c1@192.0.2.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "v=0\r\no=x\r\ns=-";
// Compact form, no body, a length folded onto the next line.
const std::string kOptions =
    "OPTIONS sip:server SIP/2.0\r\n"
    "v: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK2\r\n"
    "f: <sip:bob@example.com>;tag=2\r\n"
    "t: <sip:server>\r\n"
    "i: c2\r\n"
    "CSeq: 2 OPTIONS\r\n"
    "l:\r\n 0\r\n"
    "\r\n";
// Lines ending in bare LF, a body holding a CRLFCRLF, and the length given twice alike.
const std::string kMessage =
    "MESSAGE sip:alice@example.com SIP/2.0\n"
    "Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK3\n"
    "Content-Length: 6\n"
    "content-length:6\n"
    "\n"
    "a\r\n\r\nb";

// "E<error>:<head>" (GCC 12 warns falsely on "E" + std::to_string(...)).
std::string err(FrameError e, std::string_view head = {}) {
    std::string s(1, 'E');
    s += static_cast<char>('0' + static_cast<int>(e));
    s += ':';
    s.append(head);
    return s;
}

struct Out {
    std::vector<std::string> frames;  // "M:<message>", "P", "E<error>"
    bool operator==(const Out&) const = default;
};

// Feeds `stream` in the chunks `cuts` (offsets, ascending) through a framer of `capacity` bytes,
// as a connection would: read into free_space(), commit, next() until NeedMore.
Out feed(std::string_view stream, const std::vector<std::size_t>& cuts,
         std::size_t capacity = 4096) {
    std::vector<char> storage(capacity);
    StreamFramer f(storage);
    Out out;
    std::size_t pos = 0;
    std::vector<std::size_t> ends = cuts;
    ends.push_back(stream.size());
    for (std::size_t end : ends) {
        while (pos < end) {
            std::span<char> space = f.free_space();
            REQUIRE(!space.empty());
            std::size_t n = std::min(space.size(), end - pos);
            std::memcpy(space.data(), stream.data() + pos, n);
            f.commit(n);
            pos += n;
            for (;;) {
                Frame fr = f.next();
                if (fr.kind == FrameKind::NeedMore) break;
                if (fr.kind == FrameKind::Message)
                    out.frames.push_back("M:" + std::string(fr.bytes));
                if (fr.kind == FrameKind::Ping) out.frames.push_back("P");
                if (fr.kind == FrameKind::Error) {
                    out.frames.push_back(err(fr.error, fr.bytes));
                    return out;
                }
            }
        }
    }
    return out;
}

Out whole(std::string_view stream, std::size_t capacity = 4096) {
    return feed(stream, {}, capacity);
}

// The same frames however the stream is cut: at every offset, byte by byte, random chunks.
void check_every_cut(std::string_view stream, const Out& expected, std::size_t capacity = 4096) {
    CHECK(whole(stream, capacity) == expected);
    for (std::size_t k = 1; k < stream.size(); ++k) {
        CAPTURE(k);
        REQUIRE(feed(stream, {k}, capacity) == expected);
    }
    std::vector<std::size_t> bytes;
    for (std::size_t k = 1; k < stream.size(); ++k) bytes.push_back(k);
    CHECK(feed(stream, bytes, capacity) == expected);
    std::mt19937 rng(17);
    for (int round = 0; round < 200; ++round) {
        std::vector<std::size_t> cuts;
        for (std::size_t k = 1 + rng() % 40; k < stream.size(); k += 1 + rng() % 40)
            cuts.push_back(k);
        CAPTURE(round);
        REQUIRE(feed(stream, cuts, capacity) == expected);
    }
}

std::string msg(std::string_view m) {
    return "M:" + std::string(m);
}

TEST_CASE("stream framer: one message, whatever the cuts") {
    for (const std::string& m : {kInvite, kOptions, kMessage}) {
        CAPTURE(m);
        check_every_cut(m, Out{{msg(m)}});
    }
}

TEST_CASE("stream framer: pipelined messages, pings and lone CRLFs between them") {
    const std::string stream = "\r\n" + kInvite + kOptions + "\r\n\r\n" + kMessage + "\r\n" +
                               kInvite + "\r\n\r\n\r\n\r\n" + "\r\n" + kOptions;
    check_every_cut(stream, Out{{msg(kInvite), msg(kOptions), "P", msg(kMessage), msg(kInvite), "P",
                                 "P", msg(kOptions)}});
}

TEST_CASE("stream framer: a ping alone, and a CRLF that may start one waits") {
    check_every_cut("\r\n\r\n", Out{{"P"}});
    CHECK(whole("\r\n") == Out{});
    CHECK(whole("\r\n\r") == Out{});
    CHECK(whole("\r\n\r\n\r\n") == Out{{"P"}});
}

TEST_CASE("stream framer: a message waits for its whole body") {
    CHECK(whole(kInvite.substr(0, kInvite.size() - 1)) == Out{});
    std::vector<char> storage(4096);
    StreamFramer f(storage);
    const std::string head = kInvite.substr(0, kInvite.find("\r\n\r\n") + 4);
    std::memcpy(f.free_space().data(), head.data(), 10);
    f.commit(10);
    CHECK(f.next().kind == FrameKind::NeedMore);
    CHECK(f.head_pending());  // the slow-loris deadline runs
    std::memcpy(f.free_space().data(), head.data() + 10, head.size() - 10);
    f.commit(head.size() - 10);
    CHECK(f.next().kind == FrameKind::NeedMore);
    CHECK_FALSE(f.head_pending());  // the head is in; the body is being read

    // Between messages a CRLF (perhaps the start of a ping) starts no head deadline.
    StreamFramer g(storage);
    for (char c : std::string_view("\r\n\r")) {
        g.free_space()[0] = c;
        g.commit(1);
        CHECK(g.next().kind == FrameKind::NeedMore);
        CHECK_FALSE(g.head_pending());
    }
    g.free_space()[0] = 'I';
    g.commit(1);
    CHECK(g.next().kind == FrameKind::NeedMore);
    CHECK(g.head_pending());
}

TEST_CASE("stream framer: a message exactly as large as the buffer fits, one byte more does not") {
    check_every_cut(kInvite, Out{{msg(kInvite)}}, kInvite.size());
    const std::string head = kInvite.substr(0, kInvite.find("\r\n\r\n") + 4);
    CHECK(whole(kInvite, kInvite.size() - 1) == Out{{err(FrameError::MessageTooLarge, head)}});
    // Pipelined behind another message, a message as large as the buffer still fits: the framer
    // moves a partial message to the front.
    check_every_cut(kOptions + kInvite, Out{{msg(kOptions), msg(kInvite)}}, kInvite.size());
}

TEST_CASE("stream framer: a head larger than the buffer") {
    std::string big = "INVITE sip:a@b SIP/2.0\r\nSubject: " + std::string(200, 'x') + "\r\n";
    check_every_cut(big, Out{{err(FrameError::HeadTooLarge)}}, 128);
    // Under the size it waits, even with no blank line in sight.
    CHECK(whole(big, 4096) == Out{});
}

TEST_CASE("stream framer: Content-Length missing or abused") {
    const std::string start =
        "INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n";
    const std::string missing = start + "\r\n";
    check_every_cut(missing, Out{{err(FrameError::NoContentLength, missing)}});
    // On the start line it counts for nothing.
    const std::string in_start = "INVITE sip:l:5 SIP/2.0\r\nVia: x\r\n\r\n";
    CHECK(whole(in_start) == Out{{err(FrameError::NoContentLength, in_start)}});
    for (std::string_view value :
         {"-1", "+1", "1x", "0x10", "", "4294967296", "99999999999", "1 2", "1.0", "\xff"}) {
        const std::string head = start + "Content-Length: " + std::string(value) + "\r\n\r\n";
        CAPTURE(value);
        CHECK(whole(head + "body") == Out{{err(FrameError::BadContentLength, head)}});
    }
    const std::string twice = start + "Content-Length: 4\r\nl: 5\r\n\r\n";
    CHECK(whole(twice + "12345") == Out{{err(FrameError::BadContentLength, twice)}});
    const std::string folded_twice = start + "Content-Length: 1\r\n 2\r\n\r\n";
    CHECK(whole(folded_twice + "12") == Out{{err(FrameError::BadContentLength, folded_twice)}});
    // The largest number that parses, far beyond the buffer.
    const std::string huge = start + "Content-Length: 4294967295\r\n\r\n";
    CHECK(whole(huge) == Out{{err(FrameError::MessageTooLarge, huge)}});
    // An error is final, and messages before it are framed.
    check_every_cut(kOptions + missing + kInvite,
                    Out{{msg(kOptions), err(FrameError::NoContentLength, missing)}});
}

TEST_CASE("stream framer: an error is final until reset") {
    std::vector<char> storage(256);
    StreamFramer f(storage);
    const std::string bad = "X\r\n\r\n";
    std::memcpy(f.free_space().data(), bad.data(), bad.size());
    f.commit(bad.size());
    CHECK(f.next().error == FrameError::NoContentLength);
    CHECK(f.next().error == FrameError::NoContentLength);
    f.reset();
    CHECK(f.next().kind == FrameKind::NeedMore);
    CHECK(f.buffered() == 0);
}

TEST_CASE("stream framer: framing allocates nothing") {
    const std::string stream = kInvite + "\r\n\r\n" + kOptions + kMessage;
    std::vector<char> storage(4096);
    StreamFramer f(storage);
    std::size_t messages = 0;
    test::AllocationCounter counter;
    for (char c : stream) {
        f.free_space()[0] = c;
        f.commit(1);
        for (Frame fr = f.next(); fr.kind != FrameKind::NeedMore; fr = f.next())
            messages += fr.kind == FrameKind::Message ? 1 : 0;
    }
    CHECK(counter.stop() == 0);
    CHECK(messages == 3);
}

}  // namespace
}  // namespace sipr::sip
