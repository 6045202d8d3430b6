// Proves the parsers never allocate (src/sip/README.md: "Nothing allocates"), with the counting
// operator new of support/alloc_counter.h. The count is on only around parser calls, so doctest,
// std::string and the fixture loading around them are not counted.
#include <doctest/doctest.h>

#include "support/alloc_counter.h"
#include "support/fixtures.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <new>
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

using test::AllocationCounter;
using test::Fixture;
using test::load_fixtures;

bool frames(ParseStatus s) {
    return s == ParseStatus::Ok || s == ParseStatus::BadContentLength;
}

// Everything a service runs over one parsed request, with results kept so nothing is skipped.
// Must itself allocate nothing: only fixed arrays on the stack.
std::size_t run_everything(const Message& m, ParseStatus status) {
    std::size_t ok = 0;
    std::array<char, 512> scratch{};
    for (std::size_t i = 0; i < m.header_count; ++i) {
        const Header& h = m.headers[i];
        switch (h.id) {
            case HeaderId::Via: {
                Via v;
                ok += parse_via(h.value, v);
                break;
            }
            case HeaderId::From:
            case HeaderId::To: {
                FromTo ft;
                if (parse_from_to(h.value, ft)) {
                    ++ok;
                    ok += unquote(ft.addr.display_name, scratch) >= 0;
                    ok += unescape(ft.addr.uri.user, scratch) >= 0;
                }
                break;
            }
            case HeaderId::Contact: {
                Contact c;
                if (parse_contact(h.value, c)) {
                    ++ok;
                    std::string_view n, v;
                    bool has_value = false;
                    ParamIterator it(c.params);
                    while (it.next(n, v, has_value)) ++ok;
                    ok += has_param(c.addr.uri.params, "transport");
                }
                break;
            }
            case HeaderId::Route:
            case HeaderId::RecordRoute:
            case HeaderId::Path:
            case HeaderId::ReferTo:
            case HeaderId::ReferredBy: {
                NameAddr na;
                ok += parse_name_addr(h.value, na);
                break;
            }
            case HeaderId::CSeq: {
                CSeq c;
                ok += parse_cseq(h.value, c);
                break;
            }
            case HeaderId::MaxForwards: {
                uint32_t mf = 0;
                ok += parse_max_forwards(h.value, mf);
                break;
            }
            case HeaderId::Expires: {
                uint32_t e = 0;
                ok += parse_expires(h.value, e);
                break;
            }
            case HeaderId::Authorization: {
                DigestCredentials d;
                ok += parse_digest_credentials(h.value, d);
                break;
            }
            default:
                break;
        }
    }
    ok += has_option_tag(m, HeaderId::Supported, "path");
    ok += m.find("Call-ID") != nullptr;
    ok += m.count(HeaderId::Via);
    if (m.is_request) {
        RequestCore core;
        const Fault fault = parse_request_core(m, status, core);
        ok += fault == Fault::None;
        ok += fault_reason(fault).size();
        std::array<char, kMaxAorLength> aor{};
        std::size_t len = 0;
        ok += normalize_aor(core.request_uri, "example.com", aor, len) == AorStatus::Ok;
        ok += normalize_aor(m.request_uri, "example.com", aor, len) == AorStatus::Ok;
    }
    ok += parse_status_text(status).size();
    return ok;
}

}  // namespace

TEST_CASE("no-alloc: the counting operator new counts") {
    // If this fails, the replacement is not in effect and the cases below prove nothing.
    std::size_t count = 0;
    {
        AllocationCounter counter;
        int* volatile p = new int(7);
        delete p;
        count = counter.stop();
    }
    CHECK(count == 1);
    {
        AllocationCounter counter;
        std::vector<int> v(100);
        std::string s(200, 'x');
        auto a = std::make_unique<std::array<char, 64>>();
        char* volatile arr = new char[33];
        delete[] arr;
        count = counter.stop();
        CHECK(v.size() + s.size() + a->size() > 0);
    }
    CHECK(count == 4);
    {
        AllocationCounter counter;
        int* volatile p = new int(8);
        delete p;
    }
    {
        // Outside a counter nothing is counted.
        int* volatile p = new int(9);
        delete p;
    }
    CHECK(test::stop_counting() == 1);
}

TEST_CASE("no-alloc: parse_message allocates nothing on any fixture") {
    const auto fixtures = load_fixtures();
    REQUIRE(fixtures.size() >= 35);
    auto msg = std::make_unique<Message>();
    for (const Fixture& f : fixtures) {
        INFO("fixture ", f.name);
        std::size_t allocations = 0;
        ParseStatus st = ParseStatus::Malformed;
        {
            AllocationCounter counter;
            st = parse_message(f.bytes, *msg);
            allocations = counter.stop();
        }
        CHECK(allocations == 0);
        if (f.name.starts_with("valid_")) CHECK(st == ParseStatus::Ok);
    }
}

TEST_CASE("no-alloc: request core, typed parsers and AOR allocate nothing on valid fixtures") {
    const auto fixtures = load_fixtures();
    auto msg = std::make_unique<Message>();
    std::size_t requests = 0;
    for (const Fixture& f : fixtures) {
        INFO("fixture ", f.name);
        std::size_t allocations = 0;
        std::size_t ok = 0;
        ParseStatus st = ParseStatus::Malformed;
        {
            AllocationCounter counter;
            st = parse_message(f.bytes, *msg);
            if (frames(st)) ok = run_everything(*msg, st);
            allocations = counter.stop();
        }
        CHECK(allocations == 0);
        if (f.name.starts_with("valid_")) {
            CHECK(st == ParseStatus::Ok);
            CHECK(ok > 0);
            requests += msg->is_request;
        }
    }
    CHECK(requests >= 25);
}

TEST_CASE("no-alloc: a realistic INVITE, parsed in full") {
    const std::string invite =
        "INVITE sip:+1-212-555-0100@example.com;user=phone SIP/2.0\r\n"
        "Via: SIP/2.0/UDP sbc1.carrier.example.net:5060;branch=z9hG4bK-8812-1-0a3c;rport\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;received=198.51.100.7;branch=z9hG4bKx1\r\n"
        "Max-Forwards: 69\r\n"
        "Record-Route: <sip:sbc1.carrier.example.net;lr>\r\n"
        "From: \"Caller, The\" <sip:+12125550199@carrier.example.net;user=phone>;tag=q1w8e5vz\r\n"
        "To: <sip:+1-212-555-0100@example.com;user=phone>\r\n"
        "Call-ID: c2b7e9d04a61@198.51.100.7\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:+12125550199@198.51.100.7:5060>\r\n"
        "Supported: 100rel, timer, replaces\r\n"
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE\r\n"
        "Session-Expires: 1800\r\n"
        "Content-Type: application/sdp\r\n"
        "Content-Length: 34\r\n"
        "\r\n"
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\n";
    auto msg = std::make_unique<Message>();
    std::size_t allocations = 0;
    ParseStatus st = ParseStatus::Malformed;
    Fault fault = Fault::NoVia;
    RequestCore core;
    {
        AllocationCounter counter;
        st = parse_message(invite, *msg);
        fault = parse_request_core(*msg, st, core);
        (void)run_everything(*msg, st);
        allocations = counter.stop();
    }
    CHECK(allocations == 0);
    CHECK(st == ParseStatus::Ok);
    CHECK(fault == Fault::None);
    CHECK(msg->header_count == 22);
    CHECK(core.from.tag == "q1w8e5vz");
    CHECK(core.top_via.branch == "z9hG4bK-8812-1-0a3c");
    CHECK(msg->body.size() == 34);
}

}  // namespace sipr::sip
