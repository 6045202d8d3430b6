// Over-read tests in the manner of picohttpparser: every input is copied so that it ends right
// before a page mapped PROT_NONE (and, in a second pass, so that it starts right after one), then
// parsed with parse_message, parse_request_core, every typed header parser and parse_uri. A read
// one byte beyond the input faults at once. Every fixture is also cut at every byte offset.
#include <doctest/doctest.h>

#include "support/fixtures.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/sip/aor.h"
#include "sipr/sip/headers.h"
#include "sipr/sip/message.h"
#include "sipr/sip/request.h"
#include "sipr/sip/uri.h"

namespace sipr::sip {
namespace {

using test::Fixture;
using test::load_fixtures;

bool is_valid_name(std::string_view name) {
    return name.starts_with("valid_");
}

// `size` usable bytes with an inaccessible page on each side:
//   [guard][ ... usable ... ][guard]
// place_at_end() copies bytes so that they end where the upper guard begins; place_at_start()
// copies them so that they begin where the lower guard ends.
class GuardedBuffer {
  public:
    explicit GuardedBuffer(std::size_t size) {
        page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        usable_ = (size + page_ - 1) / page_ * page_;
        if (usable_ == 0) usable_ = page_;
        total_ = usable_ + 2 * page_;
        void* p = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(p != MAP_FAILED);
        base_ = static_cast<char*>(p);
        REQUIRE(mprotect(base_, page_, PROT_NONE) == 0);
        REQUIRE(mprotect(base_ + page_ + usable_, page_, PROT_NONE) == 0);
    }
    ~GuardedBuffer() { munmap(base_, total_); }
    GuardedBuffer(const GuardedBuffer&) = delete;
    GuardedBuffer& operator=(const GuardedBuffer&) = delete;

    std::string_view place_at_end(std::string_view bytes) {
        if (bytes.size() > usable_) FAIL("input larger than the guarded buffer");
        char* end = base_ + page_ + usable_;
        char* dst = end - bytes.size();
        if (!bytes.empty()) std::memcpy(dst, bytes.data(), bytes.size());
        return {dst, bytes.size()};
    }
    std::string_view place_at_start(std::string_view bytes) {
        if (bytes.size() > usable_) FAIL("input larger than the guarded buffer");
        char* dst = base_ + page_;
        if (!bytes.empty()) std::memcpy(dst, bytes.data(), bytes.size());
        return {dst, bytes.size()};
    }

  private:
    std::size_t page_ = 4096;
    std::size_t usable_ = 0;
    std::size_t total_ = 0;
    char* base_ = nullptr;
};

bool frames(ParseStatus s) {
    return s == ParseStatus::Ok || s == ParseStatus::BadContentLength;
}

// Runs the typed parser that belongs to a header id over `value`. Returns the parser's verdict
// (true for ids without a typed parser) so the calls cannot be dropped.
bool run_typed_parser(HeaderId id, std::string_view value) {
    std::array<char, 512> scratch{};
    switch (id) {
        case HeaderId::Via: {
            Via v;
            return parse_via(value, v);
        }
        case HeaderId::From:
        case HeaderId::To: {
            FromTo ft;
            const bool ok = parse_from_to(value, ft);
            if (ok && ft.addr.display_quoted) (void)unquote(ft.addr.display_name, scratch);
            if (ok) (void)unescape(ft.addr.uri.user, scratch);
            return ok;
        }
        case HeaderId::Contact: {
            Contact c;
            const bool ok = parse_contact(value, c);
            if (ok && !c.star) {
                std::string_view n, v;
                bool has_value = false;
                ParamIterator it(c.params);
                while (it.next(n, v, has_value)) {
                }
                ParamIterator uri_params(c.addr.uri.params);
                while (uri_params.next(n, v, has_value)) {
                }
            }
            return ok;
        }
        case HeaderId::Route:
        case HeaderId::RecordRoute:
        case HeaderId::Path:
        case HeaderId::ReferTo:
        case HeaderId::ReferredBy: {
            NameAddr na;
            const bool ok = parse_name_addr(value, na);
            std::string_view lr;
            if (ok) (void)find_param(na.uri.params, "lr", lr);
            return ok;
        }
        case HeaderId::CSeq: {
            CSeq c;
            return parse_cseq(value, c);
        }
        case HeaderId::MaxForwards: {
            uint32_t mf = 0;
            return parse_max_forwards(value, mf);
        }
        case HeaderId::Expires:
        case HeaderId::MinExpires: {
            uint32_t e = 0;
            return parse_expires(value, e);
        }
        case HeaderId::Authorization:
        case HeaderId::ProxyAuthorization: {
            DigestCredentials d;
            return parse_digest_credentials(value, d);
        }
        default:
            return true;
    }
}

// Everything a service would run over a parsed message.
std::size_t exercise(const Message& m, ParseStatus status) {
    std::size_t ok = 0;
    if (!frames(status)) return ok;
    for (std::size_t i = 0; i < m.header_count && i < m.headers.size(); ++i)
        ok += run_typed_parser(m.headers[i].id, m.headers[i].value) ? 1 : 0;
    ok += has_option_tag(m, HeaderId::Require, "100rel") ? 1 : 0;
    ok += has_option_tag(m, HeaderId::Supported, "path") ? 1 : 0;
    if (m.is_request) {
        RequestCore core;
        ok += parse_request_core(m, status, core) == Fault::None ? 1 : 0;
        Uri uri;
        if (parse_uri(m.request_uri, uri) == UriStatus::Ok) {
            std::array<char, kMaxAorLength> aor{};
            std::size_t len = 0;
            ok += normalize_aor(uri, "example.com", aor, len) == AorStatus::Ok ? 1 : 0;
        }
    }
    return ok;
}

// The offset just past the empty line that ends the head, or npos.
std::size_t head_end(std::string_view bytes) {
    const std::size_t crlf = bytes.find("\r\n\r\n");
    const std::size_t lf = bytes.find("\n\n");
    std::size_t end = std::string_view::npos;
    if (crlf != std::string_view::npos) end = crlf + 4;
    if (lf != std::string_view::npos) end = std::min(end, lf + 2);
    return end;
}

std::size_t max_fixture_size(const std::vector<Fixture>& fixtures) {
    std::size_t n = 1;
    for (const Fixture& f : fixtures) n = std::max(n, f.bytes.size());
    return n;
}

}  // namespace

TEST_CASE("guard page: a read one byte past the input, or one before it, faults") {
    // Without this the other cases could pass with a guard that guards nothing. The faulting read
    // runs in a child process with the default SIGSEGV action; should a sanitizer still catch it,
    // it reports and exits non-zero instead of dying by the signal, so either counts.
    GuardedBuffer buf(100);
    const std::string_view at_end = buf.place_at_end("INVITE");
    const std::string_view at_start = buf.place_at_start("INVITE");
    for (const char* target : {at_end.data() + at_end.size(), at_start.data() - 1}) {
        const pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            const int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) dup2(devnull, STDERR_FILENO);
            // doctest's crash handler is inherited; the child must simply die.
            std::signal(SIGSEGV, SIG_DFL);
            std::signal(SIGBUS, SIG_DFL);
            const volatile char* p = target;
            const char c = *p;
            _exit(c == 0x7f ? 3 : 0);
        }
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        const bool faulted =
            (WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS)) ||
            (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3);
        CHECK(faulted);
    }
    // The bytes themselves are readable.
    CHECK(at_end == "INVITE");
    CHECK(at_start == "INVITE");
}

TEST_CASE("guard page: every fixture parses without reading past either end") {
    const auto fixtures = load_fixtures();
    REQUIRE(fixtures.size() >= 35);
    GuardedBuffer buf(max_fixture_size(fixtures));
    auto msg = std::make_unique<Message>();
    auto reference = std::make_unique<Message>();
    for (const Fixture& f : fixtures) {
        INFO("fixture ", f.name);
        const ParseStatus want = parse_message(f.bytes, *reference);
        for (int pass = 0; pass < 2; ++pass) {
            const std::string_view in =
                pass == 0 ? buf.place_at_end(f.bytes) : buf.place_at_start(f.bytes);
            *msg = Message{};
            const ParseStatus st = parse_message(in, *msg);
            // Where the bytes live does not change the result.
            CHECK(st == want);
            if (frames(st)) CHECK(msg->header_count == reference->header_count);
            (void)exercise(*msg, st);
        }
    }
}

TEST_CASE("guard page: typed parsers over every header value, cut at every length") {
    const auto fixtures = load_fixtures();
    std::size_t longest = 1;
    for (const Fixture& f : fixtures) longest = std::max(longest, f.bytes.size());
    GuardedBuffer buf(longest);
    auto msg = std::make_unique<Message>();
    std::size_t values = 0;
    for (const Fixture& f : fixtures) {
        INFO("fixture ", f.name);
        const ParseStatus st = parse_message(f.bytes, *msg);
        if (!frames(st)) continue;
        for (std::size_t i = 0; i < msg->header_count; ++i) {
            const Header& h = msg->headers[i];
            for (std::size_t len = 0; len <= h.value.size(); ++len) {
                (void)run_typed_parser(h.id, buf.place_at_end(h.value.substr(0, len)));
                (void)run_typed_parser(h.id, buf.place_at_start(h.value.substr(0, len)));
            }
            // parse_hostport from every position of a Via value (the sent-by starts somewhere in
            // it), each suffix ending at the guard.
            if (h.id == HeaderId::Via) {
                Uri host;
                for (std::size_t from = 0; from <= h.value.size(); ++from)
                    (void)parse_hostport(buf.place_at_end(h.value.substr(from)), host);
            }
            // The whole value in place: the verdict does not depend on where it lives.
            CHECK(run_typed_parser(h.id, buf.place_at_end(h.value)) ==
                  run_typed_parser(h.id, h.value));
            ++values;
        }
        if (msg->is_request) {
            Uri uri;
            for (std::size_t len = 0; len <= msg->request_uri.size(); ++len) {
                (void)parse_uri(buf.place_at_end(msg->request_uri.substr(0, len)), uri);
                (void)parse_uri(buf.place_at_start(msg->request_uri.substr(0, len)), uri);
            }
        }
    }
    CHECK(values > 300);
}

TEST_CASE("guard page: every valid fixture cut at every byte offset") {
    const auto fixtures = load_fixtures();
    GuardedBuffer buf(max_fixture_size(fixtures));
    auto full = std::make_unique<Message>();
    auto msg = std::make_unique<Message>();
    std::size_t cuts = 0;
    for (const Fixture& f : fixtures) {
        if (!is_valid_name(f.name)) continue;
        INFO("fixture ", f.name);
        REQUIRE(parse_message(f.bytes, *full) == ParseStatus::Ok);
        const std::size_t end = head_end(f.bytes);
        REQUIRE(end != std::string_view::npos);
        // Offsets where a prefix broke an expectation; reported once per fixture.
        std::vector<std::size_t> ok_before_head_end, too_many_headers, wrong_after_head_end;
        for (std::size_t len = 0; len <= f.bytes.size(); ++len) {
            const std::string_view in = buf.place_at_end(std::string_view(f.bytes).substr(0, len));
            *msg = Message{};
            const ParseStatus st = parse_message(in, *msg);
            (void)exercise(*msg, st);
            ++cuts;
            // A prefix without the empty line that ends the head is not a whole message
            // (RFC 3261 §7: the CRLF after the headers is mandatory).
            if (len < end && st == ParseStatus::Ok) ok_before_head_end.push_back(len);
            if (frames(st) && msg->header_count > full->header_count)
                too_many_headers.push_back(len);
            if (len >= end) {
                // The whole head is there: every header parses as in the full message, and only
                // the body can be short.
                ParseStatus want = ParseStatus::Ok;
                if (full->has_content_length && len < end + full->content_length)
                    want = ParseStatus::BadContentLength;
                bool right = st == want && msg->header_count == full->header_count;
                if (right && st == ParseStatus::Ok) {
                    const std::size_t body =
                        full->has_content_length ? full->content_length : len - end;
                    right = msg->body.size() == body;
                }
                if (!right) wrong_after_head_end.push_back(len);
            }
        }
        CHECK_MESSAGE(ok_before_head_end.empty(), "Ok before the end of the head, first at length ",
                      ok_before_head_end.empty() ? 0 : ok_before_head_end.front(), " of head end ",
                      end, " (", ok_before_head_end.size(), " lengths)");
        CHECK_MESSAGE(too_many_headers.empty(), "more headers than the whole message at length ",
                      too_many_headers.empty() ? 0 : too_many_headers.front());
        CHECK_MESSAGE(wrong_after_head_end.empty(), "wrong result with the whole head at length ",
                      wrong_after_head_end.empty() ? 0 : wrong_after_head_end.front());
    }
    CHECK(cuts > 10000);
}

TEST_CASE("guard page: every invalid fixture cut at every byte offset") {
    const auto fixtures = load_fixtures();
    GuardedBuffer buf(max_fixture_size(fixtures));
    auto msg = std::make_unique<Message>();
    std::size_t cuts = 0;
    for (const Fixture& f : fixtures) {
        if (is_valid_name(f.name)) continue;
        INFO("fixture ", f.name);
        for (std::size_t len = 0; len <= f.bytes.size(); ++len) {
            *msg = Message{};
            const ParseStatus st =
                parse_message(buf.place_at_end(std::string_view(f.bytes).substr(0, len)), *msg);
            (void)exercise(*msg, st);
            ++cuts;
        }
    }
    CHECK(cuts > 1000);
}

TEST_CASE("guard page: caps hold at the page edge") {
    // A message just over a small max_size, and one over max_headers, placed before the guard.
    const std::string bytes =
        "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n"
        "Allow: INVITE, ACK, BYE\r\nContent-Length: 0\r\n\r\n";
    GuardedBuffer buf(bytes.size());
    auto msg = std::make_unique<Message>();
    ParseLimits limits;
    limits.max_size = bytes.size() - 1;
    CHECK(parse_message(buf.place_at_end(bytes), *msg, limits) == ParseStatus::TooLarge);
    limits = ParseLimits{};
    limits.max_headers = 3;
    CHECK(parse_message(buf.place_at_end(bytes), *msg, limits) == ParseStatus::TooManyHeaders);
    limits.max_headers = 5;
    CHECK(parse_message(buf.place_at_end(bytes), *msg, limits) == ParseStatus::Ok);
    CHECK(msg->header_count == 5);
}

}  // namespace sipr::sip
