// libFuzzer target: the RFC 3261 §18.3 stream framer (sip/stream_framer.h). The input is a stream
// fed twice, whole and in chunks whose sizes come from the input itself, into a small buffer (so
// HeadTooLarge and MessageTooLarge are cheap to reach) and a large one. Checked: both feeds frame
// the same; every frame lies inside the buffer; a Message's head names its own length; an error is
// final; the bytes consumed are exactly the messages, pings and skipped CRLFs.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "sipr/sip/message.h"
#include "sipr/sip/stream_framer.h"

namespace {

using sipr::fuzz::inside;
using namespace sipr::sip;

struct Trace {
    std::string frames;  // one record per frame: kind, error, bytes
    bool operator==(const Trace&) const = default;
};

// Feeds `stream` in chunks: sizes from `sizes` (cycled; 0 stands for 1), or the whole stream at
// once when `sizes` is empty.
Trace feed(std::string_view stream, std::string_view sizes, std::size_t capacity) {
    std::unique_ptr<char[]> storage(new char[capacity]);
    const std::string_view buffer(storage.get(), capacity);
    StreamFramer f(std::span<char>(storage.get(), capacity));
    Trace t;
    std::size_t pos = 0, turn = 0;
    bool failed = false;
    while (pos < stream.size() && !failed) {
        std::span<char> space = f.free_space();
        SIPR_FUZZ_CHECK(!space.empty());
        std::size_t want = stream.size() - pos;
        if (!sizes.empty())
            want = std::max<std::size_t>(1, static_cast<uint8_t>(sizes[turn++ % sizes.size()]));
        const std::size_t n = std::min({space.size(), want, stream.size() - pos});
        std::memcpy(space.data(), stream.data() + pos, n);
        f.commit(n);
        pos += n;
        for (;;) {
            const Frame fr = f.next();
            if (fr.kind == FrameKind::NeedMore) break;
            SIPR_FUZZ_CHECK(inside(fr.bytes, buffer));
            t.frames += static_cast<char>('0' + static_cast<int>(fr.kind));
            t.frames += static_cast<char>('0' + static_cast<int>(fr.error));
            t.frames.append(fr.bytes);
            t.frames += '\0';
            if (fr.kind == FrameKind::Message) {
                SIPR_FUZZ_CHECK(!fr.bytes.empty() && fr.bytes.size() <= capacity);
                // The head ends at the first blank line and names the body's length.
                auto m = std::make_unique<Message>();
                const ParseStatus ps = parse_message(fr.bytes, *m, ParseLimits{65535, 128});
                if (ps == ParseStatus::Ok) {
                    SIPR_FUZZ_CHECK(m->has_content_length);
                    SIPR_FUZZ_CHECK(m->body.data() + m->body.size() ==
                                    fr.bytes.data() + fr.bytes.size());
                }
            } else if (fr.kind == FrameKind::Ping) {
                SIPR_FUZZ_CHECK(fr.bytes.empty());
            } else {
                SIPR_FUZZ_CHECK(fr.kind == FrameKind::Error && fr.error != FrameError::None);
                const Frame again = f.next();
                SIPR_FUZZ_CHECK(again.kind == FrameKind::Error && again.error == fr.error);
                if (fr.error == FrameError::HeadTooLarge)
                    SIPR_FUZZ_CHECK(fr.bytes.empty());
                else
                    SIPR_FUZZ_CHECK(fr.bytes.ends_with("\n\n") || fr.bytes.ends_with("\n\r\n"));
                failed = true;
                break;
            }
        }
    }
    SIPR_FUZZ_CHECK(f.buffered() <= capacity);
    return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    std::string_view in = sipr::fuzz::as_text(data, size);
    // The first byte tells how many of the next bytes are chunk sizes; the rest is the stream.
    std::size_t k = in.empty() ? 0 : static_cast<uint8_t>(in[0]) % 8;
    std::string_view sizes = in.substr(std::min<std::size_t>(1, in.size()));
    std::string_view stream = sizes.substr(std::min(k, sizes.size()));
    sizes = sizes.substr(0, std::min(k, sizes.size()));
    for (std::size_t capacity : {std::size_t{256}, std::size_t{65535}}) {
        const Trace whole = feed(stream, {}, capacity);
        SIPR_FUZZ_CHECK(feed(stream, sizes.empty() ? std::string_view("\1") : sizes, capacity) ==
                        whole);
    }
    return 0;
}
