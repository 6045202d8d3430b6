// libFuzzer target: what a service does with one datagram, minus sockets and the store
// (DESIGN §4). parse_message under the default limits and under tight ones; every typed header
// parser over every header entry, whatever its name; parse_request_core; then the services' path
// through intake(), the AOR of the Request-URI and the response they would send (513, 400 or
// 302), written into buffers small enough to overflow and parsed back.
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>

#include "fuzz_check.h"
#include "sipr/base/siphash.h"
#include "sipr/sip/aor.h"
#include "sipr/sip/headers.h"
#include "sipr/sip/intake.h"
#include "sipr/sip/message.h"
#include "sipr/sip/request.h"
#include "sipr/sip/response.h"
#include "sipr/sip/uri.h"

namespace {

using sipr::fuzz::inside;
using namespace sipr::sip;

constexpr sipr::base::SipKey kTagKey{0x0706050403020100u, 0x0f0e0d0c0b0a0908u};

void check_uri(const Uri& u, std::string_view text) {
    for (std::string_view part : {u.scheme_text, u.user, u.password, u.host, u.params, u.headers})
        SIPR_FUZZ_CHECK(inside(part, text));
}

void check_name_addr(const NameAddr& a, std::string_view value) {
    SIPR_FUZZ_CHECK(inside(a.display_name, value));
    SIPR_FUZZ_CHECK(inside(a.uri_text, value));
    SIPR_FUZZ_CHECK(inside(a.params, value));
    if (a.uri_status == UriStatus::Ok) check_uri(a.uri, value);
}

void walk_params(std::string_view params) {
    ParamIterator it(params);
    std::string_view name, value;
    bool has_value = false;
    std::size_t steps = 0;
    while (it.next(name, value, has_value)) {
        SIPR_FUZZ_CHECK(inside(name, params) && inside(value, params));
        ++steps;
        SIPR_FUZZ_CHECK(steps <= params.size() + 1);
    }
}

// Runs every typed parser over one header value: a parser must cope with any text, not only the
// header it was written for.
void exercise_header(const Message& m, const Header& h) {
    const std::string_view v = h.value;
    SIPR_FUZZ_CHECK(header_id(h.name) == h.id);
    SIPR_FUZZ_CHECK(m.find(h.name) != nullptr);
    SIPR_FUZZ_CHECK(m.count(h.id) >= 1);
    (void)is_list_header(h.id);

    NameAddr addr;
    if (parse_name_addr(v, addr)) {
        check_name_addr(addr, v);
        walk_params(addr.params);
        if (addr.display_quoted) {
            std::array<char, 64> small{};
            const std::ptrdiff_t n = unquote(addr.display_name, small);
            SIPR_FUZZ_CHECK(n >= -1 && n <= static_cast<std::ptrdiff_t>(small.size()));
        }
    }

    FromTo ft;
    if (parse_from_to(v, ft)) {
        check_name_addr(ft.addr, v);
        SIPR_FUZZ_CHECK(inside(ft.tag, v));
    }

    Via via;
    if (parse_via(v, via)) {
        for (std::string_view part : {via.protocol, via.version, via.transport, via.host,
                                      via.branch, via.received, via.maddr, via.rport, via.params})
            SIPR_FUZZ_CHECK(inside(part, v));
        if (!via.has_port) SIPR_FUZZ_CHECK(via.port == 0);
        walk_params(via.params);
    }

    Contact c;
    if (parse_contact(v, c)) {
        if (!c.star) check_name_addr(c.addr, v);
        SIPR_FUZZ_CHECK(c.q <= 1000);
        SIPR_FUZZ_CHECK(inside(c.instance, v) && inside(c.params, v));
    }

    CSeq cseq;
    if (parse_cseq(v, cseq)) {
        SIPR_FUZZ_CHECK(cseq.number < (1u << 31));
        SIPR_FUZZ_CHECK(inside(cseq.method_text, v));
    }

    uint32_t n = 0;
    if (parse_max_forwards(v, n)) SIPR_FUZZ_CHECK(n <= 255);
    (void)parse_expires(v, n);

    DigestCredentials d;
    if (parse_digest_credentials(v, d)) {
        for (std::string_view part : {d.username, d.realm, d.nonce, d.uri, d.response, d.algorithm,
                                      d.cnonce, d.opaque, d.qop, d.nc})
            SIPR_FUZZ_CHECK(inside(part, v));
    }

    for (std::string_view tag : {"100rel", "path", "outbound", "gruu"})
        (void)has_option_tag(m, h.id, tag);
}

// A response the service may send must fit its buffer and parse as a response again.
void check_response(std::string_view out, std::span<const char> buf, uint16_t status) {
    if (out.empty()) return;  // did not fit: the caller counts a drop
    SIPR_FUZZ_CHECK(inside(out, std::string_view(buf.data(), buf.size())));
    SIPR_FUZZ_CHECK(out.starts_with("SIP/2.0 ") && out.ends_with("\r\n\r\n"));
    auto back = std::make_unique<Message>();
    const ParseStatus ps = parse_message(out, *back, ParseLimits{65535, kHeaderCapacity});
    SIPR_FUZZ_CHECK(ps == ParseStatus::Ok);
    SIPR_FUZZ_CHECK(!back->is_request && back->status_code == status);
}

// Writes the answer the service would give into buffers of several sizes (exact heap blocks so
// ASan sees an over-write), one-shot and step by step.
void answer(const Message& m, const RequestCore& core, uint16_t status, std::string_view reason) {
    const std::string_view extra =
        status == 302 ? "Contact: <sip:alice@192.0.2.10:5060>;q=1.0;expires=3600\r\n" : "";
    const Source sources[] = {{"192.0.2.7", 5062}, {"2001:db8::7", 5060}, {}};
    std::size_t i = 0;
    for (std::size_t cap : {std::size_t{0}, std::size_t{64}, std::size_t{512}, std::size_t{1300},
                            std::size_t{8192}}) {
        std::unique_ptr<char[]> block(cap != 0 ? new char[cap] : nullptr);
        const std::span<char> buf(block.get(), cap);
        const std::string_view out = write_response(m, core, status, reason, extra, kTagKey, buf,
                                                    sources[i++ % std::size(sources)]);
        check_response(out, buf, status);
    }

    // The step-by-step form, as the redirect service builds a 302 with several contacts.
    std::array<char, 1300> buf{};
    ResponseWriter w(buf);
    w.begin(m, core, status, reason, kTagKey, sources[0]);
    if (status == 302) {
        for (int k = 0; k < 8; ++k)
            w.add_header("Contact", "<sip:alice@[2001:db8::10]:5060;transport=udp>;q=0.5");
    }
    const std::string_view out = w.finish();
    SIPR_FUZZ_CHECK(out.empty() == w.overflow());
    check_response(out, buf, status);
}

// parse_request_core on its own: on Fault::None every part of RequestCore is a view into the
// datagram and agrees with the request line.
void check_request_core(const Message& m, ParseStatus ps, std::string_view bytes) {
    RequestCore core;
    const Fault fault = parse_request_core(m, ps, core);
    (void)fault_reason(fault);
    if (fault != Fault::None) return;
    SIPR_FUZZ_CHECK(inside(core.call_id, bytes));
    SIPR_FUZZ_CHECK(inside(core.top_via.host, bytes) && inside(core.top_via.branch, bytes));
    SIPR_FUZZ_CHECK(inside(core.from.tag, bytes) && inside(core.to.tag, bytes));
    SIPR_FUZZ_CHECK(core.cseq.method_text == m.method_name);  // RFC 3261 §8.1.1.5
    if (core.has_max_forwards) SIPR_FUZZ_CHECK(core.max_forwards <= 255);
    if (core.request_uri_status == UriStatus::Ok) check_uri(core.request_uri, bytes);

    std::array<char, kToTagLength> tag{};
    make_to_tag(kTagKey, core, tag);
    for (char ch : tag) SIPR_FUZZ_CHECK((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'));
}

// The services' own path (DESIGN §4): intake() classifies the datagram, then the service answers
// 513/400 itself, or looks up the Request-URI's AOR and answers 302.
void run_intake(std::string_view bytes, std::size_t max_message, std::size_t max_headers) {
    auto m = std::make_unique<Message>();
    RequestCore core;
    const IntakeResult r = intake(bytes, max_message, max_headers, *m, core);
    switch (r.action) {
        case IntakeAction::Drop:
            return;
        case IntakeAction::Respond:
            SIPR_FUZZ_CHECK(r.status == 400 || r.status == 513);
            answer(*m, core, r.status, r.reason);
            return;
        case IntakeAction::Proceed:
            break;
    }
    SIPR_FUZZ_CHECK(m->is_request && bytes.size() <= max_message);
    if (core.request_uri_status == UriStatus::Ok) {
        std::array<char, kMaxAorLength> aor{};
        std::size_t len = 0;
        if (normalize_aor(core.request_uri, "example.com", aor, len) == AorStatus::Ok)
            SIPR_FUZZ_CHECK(len <= aor.size());
    }
    answer(*m, core, 302, default_reason(302));
}

void parse_with(std::string_view bytes, const ParseLimits& limits) {
    // Message is ~5 KiB of header slots; a fresh one per parse, as a worker's slot would be reset.
    auto m = std::make_unique<Message>();
    const ParseStatus ps = parse_message(bytes, *m, limits);
    (void)parse_status_text(ps);
    if (ps == ParseStatus::Malformed || ps == ParseStatus::TooLarge) return;

    // On Ok, TooManyHeaders and BadContentLength the start line is valid (message.h).
    SIPR_FUZZ_CHECK(inside(m->method_name, bytes) && inside(m->request_uri, bytes));
    SIPR_FUZZ_CHECK(inside(m->reason, bytes) && inside(m->version, bytes));
    if (m->is_request) {
        Uri uri;
        if (parse_uri(m->request_uri, uri) == UriStatus::Ok) check_uri(uri, m->request_uri);
    }
    if (ps == ParseStatus::TooManyHeaders) return;

    // On Ok and BadContentLength every header is valid too.
    SIPR_FUZZ_CHECK(m->header_count <= limits.max_headers && m->header_count <= kHeaderCapacity);
    for (std::size_t i = 0; i < m->header_count; ++i) {
        const Header& h = m->headers[i];
        SIPR_FUZZ_CHECK(inside(h.name, bytes) && inside(h.value, bytes));
        exercise_header(*m, h);
    }
    if (ps == ParseStatus::Ok) {
        SIPR_FUZZ_CHECK(inside(m->body, bytes));
        if (m->has_content_length) SIPR_FUZZ_CHECK(m->body.size() == m->content_length);
    }
    if (m->is_request) check_request_core(*m, ps, bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const std::string_view bytes = sipr::fuzz::as_text(data, size);
    parse_with(bytes, ParseLimits{});
    parse_with(bytes, ParseLimits{512, 6});  // reaches TooLarge and TooManyHeaders cheaply
    run_intake(bytes, 1300, 96);
    run_intake(bytes, 512, 6);  // 513 and "Too Many Headers"
    return 0;
}
