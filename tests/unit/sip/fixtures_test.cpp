// Table-driven cases over every message fixture in tests/data (SIPR_TEST_DATA_DIR). Each fixture
// has exactly one table entry stating the framing result, the request fault and the parsed fields;
// a fixture added without an entry fails the first test case.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/base/ascii.h"
#include "sipr/sip/aor.h"
#include "sipr/sip/headers.h"
#include "sipr/sip/message.h"
#include "sipr/sip/method.h"
#include "sipr/sip/request.h"
#include "sipr/sip/uri.h"

namespace sipr::sip {
namespace {

using namespace std::string_view_literals;

constexpr std::string_view kAbsent = "<absent>";

std::filesystem::path data_dir() {
    return std::filesystem::path(SIPR_TEST_DATA_DIR);
}

// Every *.sip file of tests/data, sorted by name.
std::vector<std::string> fixture_files() {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(data_dir()))
        if (entry.is_regular_file() && entry.path().extension() == ".sip")
            names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

std::string read_fixture(std::string_view name) {
    std::ifstream in(data_dir() / std::string(name), std::ios::binary);
    CHECK_MESSAGE(in.good(), "cannot open fixture ", name);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// One fixture, loaded and parsed. Large (a Message holds 128 headers): always on the heap.
struct Fx {
    std::string bytes;
    Message msg{};
    ParseStatus status = ParseStatus::Malformed;
    bool core_parsed = false;
    RequestCore core{};
    Fault fault = Fault::None;
};

bool frames(ParseStatus s) {
    return s == ParseStatus::Ok || s == ParseStatus::BadContentLength;
}

std::unique_ptr<Fx> load(std::string_view name) {
    auto fx = std::make_unique<Fx>();
    fx->bytes = read_fixture(name);
    fx->status = parse_message(fx->bytes, fx->msg);
    if (frames(fx->status) && fx->msg.is_request) {
        fx->core_parsed = true;
        fx->fault = parse_request_core(fx->msg, fx->status, fx->core);
    }
    return fx;
}

// True when `v` lies inside `bytes` (an empty view anywhere counts as inside).
bool inside(std::string_view bytes, std::string_view v) {
    if (v.empty()) return true;
    const auto b = reinterpret_cast<std::uintptr_t>(bytes.data());
    const auto p = reinterpret_cast<std::uintptr_t>(v.data());
    return p >= b && p + v.size() <= b + bytes.size();
}

std::string_view value_of(const Message& m, HeaderId id) {
    const Header* h = m.find(id);
    return h ? h->value : kAbsent;
}
std::string_view value_of(const Message& m, std::string_view name) {
    const Header* h = m.find(name);
    return h ? h->value : kAbsent;
}
std::string_view name_of(const Message& m, HeaderId id) {
    const Header* h = m.find(id);
    return h ? h->name : kAbsent;
}

std::vector<std::string_view> values_of(const Message& m, HeaderId id) {
    std::vector<std::string_view> out;
    for (std::size_t i = 0; i < m.header_count && i < m.headers.size(); ++i)
        if (m.headers[i].id == id) out.push_back(m.headers[i].value);
    return out;
}

// Every header entry with `id`, in order, has exactly these values.
void check_values(const Message& m, HeaderId id, std::initializer_list<std::string_view> want) {
    const auto got = values_of(m, id);
    CHECK(got.size() == want.size());
    std::size_t i = 0;
    for (std::string_view w : want) {
        if (i >= got.size()) break;
        INFO("element ", i);
        CHECK(got[i] == w);
        ++i;
    }
}

std::string_view nth_value(const Message& m, HeaderId id, std::size_t n) {
    const auto all = values_of(m, id);
    return n < all.size() ? all[n] : kAbsent;
}

Via via_of(std::string_view value) {
    Via v;
    CHECK_MESSAGE(parse_via(value, v), "parse_via failed: ", value);
    return v;
}
FromTo from_to_of(std::string_view value) {
    FromTo f;
    CHECK_MESSAGE(parse_from_to(value, f), "parse_from_to failed: ", value);
    return f;
}
Contact contact_of(std::string_view value) {
    Contact c;
    CHECK_MESSAGE(parse_contact(value, c), "parse_contact failed: ", value);
    return c;
}
NameAddr name_addr_of(std::string_view value) {
    NameAddr n;
    CHECK_MESSAGE(parse_name_addr(value, n), "parse_name_addr failed: ", value);
    return n;
}
CSeq cseq_of(std::string_view value) {
    CSeq c;
    CHECK_MESSAGE(parse_cseq(value, c), "parse_cseq failed: ", value);
    return c;
}
uint32_t expires_of(std::string_view value) {
    uint32_t e = 0xdeadbeef;
    CHECK_MESSAGE(parse_expires(value, e), "parse_expires failed: ", value);
    return e;
}

std::string unescaped(std::string_view in) {
    std::array<char, 256> buf{};
    const std::ptrdiff_t n = unescape(in, buf);
    CHECK_MESSAGE(n >= 0, "unescape failed: ", in);
    return n < 0 ? std::string() : std::string(buf.data(), static_cast<std::size_t>(n));
}

std::string aor_of(const Uri& uri, std::string_view default_domain,
                   AorStatus want = AorStatus::Ok) {
    std::array<char, kMaxAorLength> buf{};
    std::size_t len = 0;
    const AorStatus st = normalize_aor(uri, default_domain, buf, len);
    CHECK(st == want);
    return st == AorStatus::Ok ? std::string(buf.data(), len) : std::string();
}

// The parts every well-formed request in the corpus shares.
void check_core_addresses(const Fx& f, std::string_view from_tag, std::string_view to_tag,
                          std::string_view call_id, uint32_t cseq, Method method) {
    CHECK(f.core.from.tag == from_tag);
    CHECK(f.core.to.tag == to_tag);
    CHECK(f.core.call_id == call_id);
    CHECK(f.core.cseq.number == cseq);
    CHECK(f.core.cseq.method == method);
    CHECK(f.core.cseq.method_text == method_text(method));
}

// ------------------------------------------------------------------------------- valid fixtures

void check_valid_invite_sdp(const Fx& f) {
    const Message& m = f.msg;
    CHECK(m.count(HeaderId::Via) == 2);
    CHECK(m.count(HeaderId::Allow) == 7);
    check_values(m, HeaderId::Allow,
                 {"INVITE", "ACK", "CANCEL", "OPTIONS", "BYE", "REFER", "NOTIFY"});
    check_values(m, HeaderId::Supported, {"replaces", "timer"});
    CHECK(value_of(m, "content-type") == "application/sdp");
    CHECK(value_of(m, HeaderId::UserAgent) == "ExamplePhone/4.2.1");
    CHECK(value_of(m, HeaderId::RecordRoute) == "<sip:edge1.example.com;lr>");
    CHECK(m.has_content_length);
    CHECK(m.content_length == 235);
    CHECK(m.body.substr(0, 5) == "v=0\r\n");
    CHECK(m.body.substr(m.body.size() - 12) == "a=sendrecv\r\n");
    // The body is a view into the datagram, right after the empty line.
    CHECK(m.body.data() == f.bytes.data() + (f.bytes.size() - 235));

    CHECK(f.core.top_via.protocol == "SIP");
    CHECK(f.core.top_via.version == "2.0");
    CHECK(f.core.top_via.transport == "UDP");
    CHECK(f.core.top_via.host == "edge1.example.com");
    CHECK_FALSE(f.core.top_via.has_port);
    CHECK(f.core.top_via.branch == "z9hG4bKq7d2e0.1");
    CHECK_FALSE(f.core.top_via.has_rport);
    check_core_addresses(f, "k38fz0q2", "", "7f3a9c2e51d04b86@ua1.alpha.example.com", 20417,
                         Method::Invite);
    CHECK(f.core.from.addr.display_name == "Alice Liddell");
    CHECK(f.core.from.addr.display_quoted);
    CHECK(f.core.from.addr.uri.user == "alice");
    CHECK(f.core.from.addr.uri.host == "alpha.example.com");
    CHECK(f.core.to.addr.display_name == "Bob");
    CHECK_FALSE(f.core.to.addr.display_quoted);
    CHECK(f.core.to.addr.uri_text == "sip:bob@beta.example.com");
    CHECK(f.core.has_max_forwards);
    CHECK(f.core.max_forwards == 69);
    CHECK(f.core.request_uri_status == UriStatus::Ok);
    CHECK(f.core.request_uri.scheme == Scheme::Sip);
    CHECK(f.core.request_uri.user == "bob");
    CHECK(f.core.request_uri.host == "beta.example.com");
    CHECK_FALSE(f.core.request_uri.has_port);

    const Via second = via_of(nth_value(m, HeaderId::Via, 1));
    CHECK(second.host == "ua1.alpha.example.com");
    CHECK(second.has_port);
    CHECK(second.port == 5060);
    CHECK(second.branch == "z9hG4bK4e1d7a");
    CHECK(second.received == "192.0.2.101");
    CHECK(second.has_rport);
    CHECK(second.rport == "5060");

    const Contact c = contact_of(value_of(m, HeaderId::Contact));
    CHECK_FALSE(c.star);
    CHECK(c.addr.angle_brackets);
    CHECK(c.addr.uri.host == "ua1.alpha.example.com");
    CHECK(c.addr.uri.params == "transport=udp");
    CHECK_FALSE(c.has_q);
    CHECK(c.q == 1000);
    CHECK_FALSE(c.has_expires);

    const NameAddr rr = name_addr_of(value_of(m, HeaderId::RecordRoute));
    CHECK(rr.uri.host == "edge1.example.com");
    CHECK(rr.uri.params == "lr");
    CHECK(aor_of(f.core.request_uri, "example.com") == "sip:bob@beta.example.com");
}

void check_valid_escaped_uri(const Fx& f) {
    const Message& m = f.msg;
    CHECK(f.core.request_uri.user == "sips%3Adora%40secure.example.org");
    CHECK(f.core.request_uri.host == "example.net");
    CHECK(unescaped(f.core.request_uri.user) == "sips:dora@secure.example.org");
    check_core_addresses(f, "esc-f1", "", "esc01.a1b2c3@host3.example.org", 4711, Method::Invite);
    // A %20 in a quoted display name is not an escape: kept as written.
    CHECK(f.core.from.addr.display_name == "Dora %20 not an escape");
    CHECK(f.core.from.addr.uri.user == "I%20am%20dora");
    CHECK(unescaped(f.core.from.addr.uri.user) == "I am dora");
    CHECK(f.core.to.addr.uri.user == "sips%3Adora%40secure.example.org");
    CHECK(f.core.to.addr.uri.host == "example.net");

    const Contact c = contact_of(value_of(m, HeaderId::Contact));
    CHECK(c.addr.uri.user == "d%6Fra");
    CHECK(unescaped(c.addr.uri.user) == "dora");
    CHECK(c.addr.uri.host == "host3.example.org");
    CHECK(c.addr.uri.params == "%6Cr;col%6Fr=bl%75e%25%32%30");
    CHECK(aor_of(f.core.request_uri, "") == "sip:sips:dora@secure.example.org@example.net");
}

void check_valid_ipv6(const Fx& f) {
    const Message& m = f.msg;
    const Uri& ru = f.core.request_uri;
    CHECK(f.core.request_uri_status == UriStatus::Ok);
    CHECK(ru.user == "bob");
    CHECK(ru.host == "[2001:db8::10]");
    CHECK(ru.host_is_ipv6);
    CHECK(ru.has_port);
    CHECK(ru.port == 5070);
    CHECK(ru.params == "transport=udp");

    CHECK(f.core.top_via.host == "[2001:db8::9:1]");
    CHECK(f.core.top_via.has_port);
    CHECK(f.core.top_via.port == 5070);
    CHECK(f.core.top_via.branch == "z9hG4bKv6-111");
    CHECK(f.core.top_via.has_rport);
    CHECK(f.core.top_via.rport == "");

    const Via second = via_of(nth_value(m, HeaderId::Via, 1));
    CHECK(second.host == "[2001:db8::9:255]");
    CHECK_FALSE(second.has_port);
    CHECK(second.received == "2001:db8::9:255");
    CHECK(second.branch == "z9hG4bKv6-110");
    CHECK_FALSE(second.has_rport);

    check_core_addresses(f, "v6f1", "", "v6-call-1@[2001:db8::9:1]", 3, Method::Invite);
    CHECK(f.core.from.addr.display_name == "Alice v6");
    CHECK(f.core.from.addr.uri.host == "[2001:db8::9:1]");
    CHECK(f.core.from.addr.uri.host_is_ipv6);
    CHECK(f.core.to.addr.uri.host == "[2001:db8::10]");
    CHECK(f.core.to.addr.uri.port == 5070);

    const Contact c = contact_of(value_of(m, HeaderId::Contact));
    CHECK(c.addr.uri.host == "[2001:db8::9:1]");
    CHECK(c.addr.uri.port == 5070);
    CHECK(c.has_expires);
    CHECK(c.expires == 30);
    CHECK(aor_of(ru, "example.com") == "sip:bob@[2001:db8::10]");
}

// The generated long values of valid_long_headers.sip.
std::string long_branch() {
    std::string s = "z9hG4bK";
    for (int i = 0; i < 150; ++i) s += "abcdef0123456789"[i % 16];
    return s;
}
std::string long_display() {
    return "A very long display name " + std::string(280, 'x');
}
std::string long_tag() {
    std::string s = "t";
    for (int i = 0; i < 12; ++i) s += "0123456789";
    return s;
}
std::string long_call_id() {
    std::string s;
    for (int i = 0; i < 260; ++i) s += "qwertyuiopasdfghjklzxcvbnm"[i % 26];
    return s + "@long.example.com";
}
std::string long_token() {
    std::string s;
    for (int i = 0; i < 3000; ++i) s += "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[(i * 7) % 32];
    return s;
}

void check_valid_long_headers(const Fx& f) {
    const Message& m = f.msg;
    CHECK(f.bytes.size() == 5565);
    CHECK(m.headers[0].name == "Via");
    CHECK(m.headers[39].name == "Content-Length");
    CHECK(m.count(HeaderId::Via) == 3);
    CHECK(m.count(HeaderId::Other) == 23);
    CHECK(value_of(m, "X-Long-Token") == long_token());
    CHECK(value_of(m, "x-long-token").size() == 3000);
    CHECK(value_of(m, "X-Filler-01") == "value number 1");
    CHECK(value_of(m, "X-Filler-22") == "value number 22");
    CHECK(value_of(m, "X-Filler-23") == kAbsent);
    CHECK(value_of(m, HeaderId::UserAgent).size() == 418);
    CHECK(value_of(m, HeaderId::Date) == "Sat, 13 Nov 2010 23:29:00 GMT");
    CHECK(m.count(HeaderId::Date) == 1);
    CHECK(m.count(HeaderId::Subject) == 1);
    CHECK(value_of(m, HeaderId::SessionExpires) == "1800");
    CHECK(has_option_tag(m, HeaderId::Require, "timer"));
    CHECK_FALSE(has_option_tag(m, HeaderId::Require, "100rel"));
    CHECK(has_option_tag(m, HeaderId::Supported, "100rel"));

    CHECK(f.core.top_via.host == "edge.example.com");
    CHECK(f.core.top_via.branch == long_branch());
    CHECK(f.core.from.addr.display_name == long_display());
    check_core_addresses(f, long_tag(), "", long_call_id(), 1, Method::Invite);
    CHECK(f.core.max_forwards == 68);
    const Via third = via_of(nth_value(m, HeaderId::Via, 2));
    CHECK(third.host == "192.0.2.33");
    CHECK(third.port == 5062);
    CHECK(third.rport == "5062");
    CHECK(third.received == "192.0.2.33");
    CHECK(third.branch == "z9hG4bKua");
    const NameAddr route = name_addr_of(value_of(m, HeaderId::Route));
    CHECK(route.uri.host == "core2.example.com");
}

void check_valid_unknown_method(const Fx& f) {
    CHECK(f.msg.body == "Just some text for a method nobody knows.\r\n");
    CHECK(f.msg.content_length == 43);
    CHECK(f.core.cseq.number == 8);
    CHECK(f.core.cseq.method == Method::Unknown);
    CHECK(f.core.cseq.method_text == "NEWMETHOD");
    CHECK(f.core.from.tag == "nm1");
    CHECK(f.core.call_id == "newmethod-1@192.0.2.20");
    CHECK(f.core.max_forwards == 70);
    CHECK(f.core.request_uri.user == "user");
}

void check_valid_unknown_scheme_http(const Fx& f) {
    CHECK(f.core.request_uri_status == UriStatus::UnsupportedScheme);
    CHECK(f.core.request_uri.scheme == Scheme::Other);
    CHECK(f.core.request_uri.scheme_text == "http");
    CHECK(f.core.to.addr.uri_status == UriStatus::UnsupportedScheme);
    CHECK(f.core.to.addr.uri_text == "http://www.example.com/call?who=bob");
    check_core_addresses(f, "http-f", "", "http-scheme-1@192.0.2.21", 1, Method::Invite);
    CHECK(f.core.top_via.port == 5060);
    Uri u;
    CHECK(parse_uri(f.msg.request_uri, u) == UriStatus::UnsupportedScheme);
    CHECK(u.scheme_text == "http");
    CHECK(aor_of(f.core.request_uri, "example.com", AorStatus::UnsupportedScheme).empty());
}

void check_valid_unknown_scheme_urn(const Fx& f) {
    CHECK(f.core.request_uri_status == UriStatus::UnsupportedScheme);
    CHECK(f.core.request_uri.scheme_text == "urn");
    CHECK(f.core.to.addr.uri_status == UriStatus::UnsupportedScheme);
    CHECK(f.core.to.addr.uri_text == "urn:service:sos");
    check_core_addresses(f, "urn-f", "", "urn-scheme-1@192.0.2.22", 2, Method::Invite);
}

void check_valid_unknown_headers(const Fx& f) {
    const Message& m = f.msg;
    CHECK(m.body == "Hi\r\n");
    CHECK(m.count(HeaderId::Other) == 6);
    // Unknown headers are never split, whatever their commas.
    CHECK(value_of(m, "X-Custom-List") == "alpha, beta, gamma");
    CHECK(value_of(m, "accept") == "text/plain, application/im-iscomposing+xml");
    CHECK(value_of(m, "P-ASSERTED-IDENTITY") ==
          "\"User One\" <sip:user1@example.com>, <tel:+15551230001>");
    CHECK(value_of(m, "Foo-Bar") == "baz");
    CHECK(value_of(m, "NewFangledHeader") == "newfangled value\r\n continued newfangled value");
    CHECK(value_of(m, "UnknownHeaderWithUnusualValue") == ";;,,;;,;");
    CHECK(m.find("X-Not-There") == nullptr);
    const Header* foo = m.find("foo-bar");
    CHECK((foo != nullptr && foo->id == HeaderId::Other && foo->name == "Foo-Bar"));
    check_core_addresses(f, "unk-f", "", "unknown-headers-1@192.0.2.23", 1, Method::Message);
}

void check_valid_multi_value_lines(const Fx& f) {
    const Message& m = f.msg;
    check_values(m, HeaderId::Via,
                 {"SIP/2.0/UDP proxy2.example.com:5060;branch=z9hG4bKmv2",
                  "SIP/2.0/UDP proxy1.example.com;branch=z9hG4bKmv1",
                  "SIP/2.0/UDP 192.0.2.50:5080;rport=5080;branch=z9hG4bKmv0"});
    check_values(
        m, HeaderId::Contact,
        {R"("Desk, \"main\" <1>" <sip:jsmith@192.0.2.50:5080>;q=0.9)",
         "<sip:jsmith,alt@192.0.2.51>;q=0.5;expires=600", "sip:jsmith@192.0.2.52;expires=60"});

    const Contact c0 = contact_of(nth_value(m, HeaderId::Contact, 0));
    CHECK(c0.addr.display_quoted);
    CHECK(c0.addr.display_name == R"(Desk, \"main\" <1>)");
    std::array<char, 64> buf{};
    const std::ptrdiff_t n = unquote(c0.addr.display_name, buf);
    CHECK(std::string_view(buf.data(), n < 0 ? 0 : static_cast<std::size_t>(n)) ==
          R"(Desk, "main" <1>)");
    CHECK(c0.addr.uri.user == "jsmith");
    CHECK(c0.addr.uri.host == "192.0.2.50");
    CHECK(c0.addr.uri.port == 5080);
    CHECK(c0.has_q);
    CHECK(c0.q == 900);
    CHECK_FALSE(c0.has_expires);

    const Contact c1 = contact_of(nth_value(m, HeaderId::Contact, 1));
    CHECK(c1.addr.uri.user == "jsmith,alt");
    CHECK(c1.addr.uri.host == "192.0.2.51");
    CHECK(c1.q == 500);
    CHECK(c1.has_expires);
    CHECK(c1.expires == 600);

    // addr-spec form: the parameters after the URI belong to the header (RFC 3261 §20).
    const Contact c2 = contact_of(nth_value(m, HeaderId::Contact, 2));
    CHECK_FALSE(c2.addr.angle_brackets);
    CHECK(c2.addr.uri_text == "sip:jsmith@192.0.2.52");
    CHECK(c2.addr.uri.params == "");
    CHECK(c2.params == "expires=60");
    CHECK(c2.has_expires);
    CHECK(c2.expires == 60);
    CHECK_FALSE(c2.has_q);

    CHECK(f.core.top_via.host == "proxy2.example.com");
    CHECK(f.core.top_via.port == 5060);
    CHECK(f.core.top_via.branch == "z9hG4bKmv2");
    CHECK(f.core.from.addr.display_name == "Smith, John <jsmith>");
    CHECK(f.core.to.addr.display_name == "Smith, John <jsmith>");
    CHECK(f.core.from.addr.uri.user == "jsmith");
    check_core_addresses(f, "mv77", "", "multi-values-1@192.0.2.50", 2, Method::Register);
    CHECK(f.core.max_forwards == 68);
    CHECK(expires_of(value_of(m, HeaderId::Expires)) == 3600);
    const Via last = via_of(nth_value(m, HeaderId::Via, 2));
    CHECK(last.rport == "5080");
    CHECK(last.branch == "z9hG4bKmv0");
}

void check_valid_folding(const Fx& f) {
    const Message& m = f.msg;
    CHECK(value_of(m, HeaderId::Via) ==
          "SIP/2.0/UDP 192.0.2.60:5060\r\n  ;branch=z9hG4bKfold1\r\n  ;rport");
    CHECK(value_of(m, HeaderId::To) == "\"Fold Target\" <sip:fold@example.com>");
    CHECK(value_of(m, HeaderId::From) == "<sip:folder@example.org>\r\n\t;tag=fold-tag-9");
    CHECK(value_of(m, HeaderId::Subject) ==
          "Running late,\r\n         start the review\r\n\t without me!");
    CHECK(m.count(HeaderId::Subject) == 1);
    CHECK(f.core.top_via.host == "192.0.2.60");
    CHECK(f.core.top_via.port == 5060);
    CHECK(f.core.top_via.branch == "z9hG4bKfold1");
    CHECK(f.core.top_via.has_rport);
    CHECK(f.core.to.addr.display_name == "Fold Target");
    CHECK(f.core.to.addr.uri.user == "fold");
    check_core_addresses(f, "fold-tag-9", "", "fold-1@192.0.2.60", 100, Method::Invite);
}

void check_valid_no_space_after_colon(const Fx& f) {
    const Message& m = f.msg;
    CHECK(value_of(m, HeaderId::Via) == "SIP/2.0/UDP 192.0.2.70;branch=z9hG4bKnospace");
    CHECK(value_of(m, HeaderId::CallId) == "nospace-1@192.0.2.70");
    CHECK(value_of(m, "Accept") == "application/sdp");
    CHECK(m.has_content_length);
    CHECK(m.content_length == 0);
    CHECK(f.core.top_via.branch == "z9hG4bKnospace");
    check_core_addresses(f, "ns1", "", "nospace-1@192.0.2.70", 1, Method::Options);
    CHECK(f.core.max_forwards == 70);
}

void check_valid_mixed_case_names(const Fx& f) {
    const Message& m = f.msg;
    CHECK(m.headers[0].name == "vIa");
    CHECK(m.headers[0].id == HeaderId::Via);
    CHECK(m.find("via") == &m.headers[0]);
    CHECK(m.find("VIA") == &m.headers[0]);
    CHECK(m.find("v") == &m.headers[0]);
    CHECK(name_of(m, HeaderId::MaxForwards) == "MAX-FORWARDS");
    CHECK(name_of(m, HeaderId::CallId) == "CALL-id");
    CHECK(name_of(m, HeaderId::ContentLength) == "CONTENT-LENGTH");
    // Parameter names are case-insensitive too (RFC 3261 §7.3.1): TAG= and Tag= are tags.
    check_core_addresses(f, "mixed-from", "mixed-to", "mixed-case@192.0.2.81", 231, Method::Bye);
    CHECK(f.core.top_via.branch == "z9hG4bKmixed");
}

void check_valid_compact_forms(const Fx& f) {
    const Message& m = f.msg;
    CHECK(name_of(m, HeaderId::Via) == "v");
    CHECK(name_of(m, HeaderId::From) == "f");
    CHECK(name_of(m, HeaderId::To) == "t");
    CHECK(name_of(m, HeaderId::CallId) == "i");
    CHECK(name_of(m, HeaderId::Contact) == "m");
    CHECK(name_of(m, HeaderId::Supported) == "k");
    CHECK(name_of(m, HeaderId::SessionExpires) == "x");
    CHECK(name_of(m, HeaderId::Subject) == "s");
    CHECK(name_of(m, HeaderId::Identity) == "y");
    CHECK(name_of(m, HeaderId::ContentEncoding) == "e");
    CHECK(name_of(m, HeaderId::ContentType) == "c");
    CHECK(name_of(m, HeaderId::ContentLength) == "l");
    check_values(m, HeaderId::Supported, {"100rel", "timer"});
    CHECK(value_of(m, HeaderId::SessionExpires) == "1800;refresher=uac");
    CHECK(value_of(m, HeaderId::Subject) == "Compact forms everywhere");
    CHECK(value_of(m, HeaderId::ContentEncoding) == "identity");
    CHECK(value_of(m, HeaderId::ContentType) == "application/sdp");
    CHECK(value_of(m, HeaderId::Identity).substr(0, 20) == "eyJhbGciOiJFUzI1NiJ9");
    CHECK(value_of(m, HeaderId::Identity).substr(value_of(m, HeaderId::Identity).size() - 10) ==
          "ppt=shaken");
    // Long names find compact headers.
    CHECK(m.find("Session-Expires") == m.find(HeaderId::SessionExpires));
    CHECK(m.find("call-id") == m.find(HeaderId::CallId));
    CHECK(m.find("Content-Length") != nullptr);
    CHECK(m.content_length == 94);
    CHECK(m.body.substr(0, 5) == "v=0\r\n");
    CHECK(has_option_tag(m, HeaderId::Supported, "TIMER"));
    CHECK(f.core.top_via.branch == "z9hG4bKcompact");
    CHECK(f.core.top_via.port == 5060);
    CHECK(f.core.top_via.has_rport);
    CHECK(f.core.from.addr.display_name == "Compact Caller");
    check_core_addresses(f, "cf1", "", "compact-forms-1@192.0.2.90", 1, Method::Invite);
    const Contact c = contact_of(value_of(m, HeaderId::Contact));
    CHECK(c.has_expires);
    CHECK(c.expires == 120);
    CHECK(c.addr.uri.port == 5060);
}

void check_valid_compact_refer(const Fx& f) {
    const Message& m = f.msg;
    CHECK(name_of(m, HeaderId::ReferTo) == "r");
    CHECK(name_of(m, HeaderId::ReferredBy) == "b");
    CHECK(value_of(m, HeaderId::ReferTo) ==
          "<sip:carol@example.com?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>");
    CHECK(value_of(m, "Referred-By") == "<sip:alice@example.com>");
    const NameAddr refer_to = name_addr_of(value_of(m, HeaderId::ReferTo));
    CHECK(refer_to.uri.user == "carol");
    CHECK(refer_to.uri.host == "example.com");
    CHECK(refer_to.uri.headers == "Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2");
    CHECK(m.has_content_length);
    CHECK(m.content_length == 0);
    check_core_addresses(f, "rf1", "rt1", "refer-compact-1@192.0.2.101", 93, Method::Refer);
}

void check_valid_compact_subscribe(const Fx& f) {
    const Message& m = f.msg;
    CHECK(name_of(m, HeaderId::Event) == "o");
    CHECK(value_of(m, HeaderId::Event) == "presence");
    CHECK(name_of(m, HeaderId::AllowEvents) == "u");
    CHECK(value_of(m, "Allow-Events") == "presence, dialog");
    CHECK(m.count(HeaderId::AllowEvents) == 1);
    CHECK(expires_of(value_of(m, HeaderId::Expires)) == 600);
    CHECK(f.core.top_via.port == 5060);
    check_core_addresses(f, "sub-f", "", "subscribe-compact-1@192.0.2.102", 1, Method::Subscribe);
}

void check_valid_odd_whitespace(const Fx& f) {
    const Message& m = f.msg;
    CHECK(m.headers[0].name == "Via");
    CHECK(m.headers[0].value ==
          "SIP / 2.0 / UDP   192.0.2.110:5060 ;  branch  =  z9hG4bKws1 ; rport");
    CHECK(m.headers[1].name == "Max-Forwards");
    CHECK(m.headers[1].value == "70");
    CHECK(value_of(m, HeaderId::CallId) == "ws-call-1@192.0.2.110");
    CHECK(value_of(m, HeaderId::CSeq) == "0009  INVITE");
    CHECK(m.has_content_length);
    CHECK(m.content_length == 0);
    // RFC 3261 §20.42: SLASH and SEMI and EQUAL allow white space around them.
    CHECK(f.core.top_via.protocol == "SIP");
    CHECK(f.core.top_via.version == "2.0");
    CHECK(f.core.top_via.transport == "UDP");
    CHECK(f.core.top_via.host == "192.0.2.110");
    CHECK(f.core.top_via.port == 5060);
    CHECK(f.core.top_via.branch == "z9hG4bKws1");
    CHECK(f.core.top_via.has_rport);
    CHECK(f.core.from.addr.display_name == "White Space");
    CHECK_FALSE(f.core.to.addr.angle_brackets);
    CHECK(f.core.to.addr.uri_text == "sip:ws@example.com");
    check_core_addresses(f, "ws-from-1", "", "ws-call-1@192.0.2.110", 9, Method::Invite);
    CHECK(f.core.max_forwards == 70);
    const Contact c = contact_of(value_of(m, HeaderId::Contact));
    CHECK(c.addr.uri.host == "192.0.2.110");
    CHECK(c.has_expires);
    CHECK(c.expires == 60);
}

void check_valid_tel_uri(const Fx& f) {
    const Uri& ru = f.core.request_uri;
    CHECK(f.core.request_uri_status == UriStatus::Ok);
    CHECK(ru.scheme == Scheme::Tel);
    CHECK(ru.user == "+1-201-555-0123");
    CHECK(ru.params == "ext=42");
    CHECK(ru.host == "");
    CHECK(f.core.from.addr.uri.scheme == Scheme::Tel);
    CHECK(f.core.from.addr.uri.user == "+12015550100");
    CHECK(f.core.to.addr.uri.scheme == Scheme::Tel);
    check_core_addresses(f, "tel-f", "", "tel-1@192.0.2.111", 1, Method::Invite);
    const Contact c = contact_of(value_of(f.msg, HeaderId::Contact));
    CHECK(c.addr.uri.scheme == Scheme::Sip);
    CHECK(c.addr.uri.user == "+12015550100");
    CHECK(c.addr.uri.params == "user=phone");
    CHECK(aor_of(ru, "example.com") == "sip:+12015550123@example.com");
    CHECK(aor_of(ru, "", AorStatus::NoDomain).empty());
}

void check_valid_sips(const Fx& f) {
    CHECK(f.core.request_uri.scheme == Scheme::Sips);
    CHECK(f.core.request_uri.host == "secure.example.com");
    CHECK(f.core.top_via.transport == "TLS");
    CHECK(f.core.top_via.port == 5061);
    CHECK(f.core.from.addr.uri.scheme == Scheme::Sips);
    // RFC 3261 §19.1.4: the scheme is case-insensitive.
    CHECK(f.core.to.addr.uri.scheme == Scheme::Sips);
    CHECK(f.core.to.addr.uri.scheme_text == "SIPS");
    check_core_addresses(f, "s1", "", "sips-1@192.0.2.120", 1, Method::Invite);
    CHECK(aor_of(f.core.request_uri, "") == "sips:bob@secure.example.com");
}

void check_valid_register_star(const Fx& f) {
    const Message& m = f.msg;
    CHECK(value_of(m, HeaderId::Contact) == "*");
    const Contact c = contact_of(value_of(m, HeaderId::Contact));
    CHECK(c.star);
    CHECK(expires_of(value_of(m, HeaderId::Expires)) == 0);
    CHECK(f.core.request_uri.user == "");
    CHECK(f.core.request_uri.host == "example.com");
    CHECK(f.core.top_via.has_rport);
    check_core_addresses(f, "star1", "", "star-1@192.0.2.130", 5, Method::Register);
}

void check_valid_register_contacts(const Fx& f) {
    const Message& m = f.msg;
    CHECK(m.count(HeaderId::Contact) == 3);
    check_values(m, HeaderId::Supported, {"path", "outbound", "gruu"});
    CHECK(has_option_tag(m, HeaderId::Supported, "outbound"));
    CHECK(has_option_tag(m, HeaderId::Supported, "PATH"));
    CHECK_FALSE(has_option_tag(m, HeaderId::Supported, "timer"));
    CHECK(value_of(m, HeaderId::Path) == "<sip:edge.example.net;lr;ob>");
    CHECK(expires_of(value_of(m, HeaderId::Expires)) == 7200);

    const Contact c0 = contact_of(nth_value(m, HeaderId::Contact, 0));
    CHECK(c0.addr.uri.host == "192.0.2.140");
    CHECK(c0.addr.uri.port == 5060);
    CHECK(c0.addr.uri.params == "transport=udp;ob");
    CHECK(c0.instance == "<urn:uuid:6f1c2a4e-93b5-4d07-8e1a-2c5b7d90f3a1>");
    CHECK(c0.has_reg_id);
    CHECK(c0.reg_id == 1);
    CHECK(c0.has_q);
    CHECK(c0.q == 1000);
    CHECK(c0.has_expires);
    CHECK(c0.expires == 3600);

    const Contact c1 = contact_of(nth_value(m, HeaderId::Contact, 1));
    CHECK(c1.addr.uri.host == "[2001:db8::140]");
    CHECK(c1.addr.uri.host_is_ipv6);
    CHECK(c1.q == 500);
    CHECK(c1.expires == 1800);
    CHECK_FALSE(c1.has_reg_id);
    CHECK(c1.instance == "");

    const Contact c2 = contact_of(nth_value(m, HeaderId::Contact, 2));
    CHECK(c2.addr.display_name == "Alice mobile");
    CHECK(c2.addr.uri.host == "203.0.113.5");
    CHECK(c2.addr.uri.port == 5070);
    CHECK(c2.q == 250);
    CHECK_FALSE(c2.has_expires);
    CHECK(c2.has_reg_id);
    CHECK(c2.reg_id == 2);
    CHECK(c2.instance == "<urn:uuid:11111111-2222-3333-4444-555555555555>");

    CHECK(f.core.top_via.host == "edge.example.net");
    CHECK(f.core.top_via.branch == "z9hG4bKedge77");
    const Via second = via_of(nth_value(m, HeaderId::Via, 1));
    CHECK(second.received == "198.51.100.9");
    CHECK(second.has_rport);
    CHECK(second.rport == "40123");
    CHECK(second.branch == "z9hG4bKreg77");
    CHECK(f.core.from.addr.display_name == "Alice");
    CHECK(f.core.from.addr.display_quoted);
    check_core_addresses(f, "reg-from-77", "", "reg-contacts-77@192.0.2.140", 77, Method::Register);
    CHECK(f.core.max_forwards == 69);
}

void check_valid_register_path(const Fx& f) {
    const Message& m = f.msg;
    check_values(m, HeaderId::Path,
                 {"<sip:edge2.example.net;lr>", "<sip:edge1.example.net;lr>",
                  "<sip:edge0.example.net;lr;transport=udp>"});
    const NameAddr p2 = name_addr_of(nth_value(m, HeaderId::Path, 2));
    CHECK(p2.uri.host == "edge0.example.net");
    CHECK(p2.uri.params == "lr;transport=udp");
    CHECK(m.count(HeaderId::Via) == 3);
    CHECK(f.core.top_via.host == "edge2.example.net");
    const Via ua = via_of(nth_value(m, HeaderId::Via, 2));
    CHECK(ua.rport == "5060");
    CHECK(ua.port == 5060);
    const Contact c = contact_of(value_of(m, HeaderId::Contact));
    CHECK(c.expires == 300);
    check_core_addresses(f, "path-f", "", "path-1@192.0.2.141", 3, Method::Register);
}

void check_valid_response_180(const Fx& f) {
    const Message& m = f.msg;
    CHECK(m.version == "SIP/2.0");
    CHECK(m.request_uri.empty());
    CHECK(m.count(HeaderId::Via) == 2);
    const Via top = via_of(nth_value(m, HeaderId::Via, 0));
    CHECK(top.host == "proxy.example.net");
    CHECK(top.received == "192.0.2.200");
    CHECK(top.branch == "z9hG4bK8a2f.1");
    const Via second = via_of(nth_value(m, HeaderId::Via, 1));
    CHECK(second.rport == "5060");
    CHECK(second.received == "192.0.2.150");
    const FromTo from = from_to_of(value_of(m, HeaderId::From));
    CHECK(from.tag == "ringf1");
    CHECK(from.addr.display_name == "Ann");
    const FromTo to = from_to_of(value_of(m, HeaderId::To));
    CHECK(to.tag == "ringt2");
    const CSeq cs = cseq_of(value_of(m, HeaderId::CSeq));
    CHECK(cs.number == 12);
    CHECK(cs.method == Method::Invite);
    const Contact c = contact_of(value_of(m, HeaderId::Contact));
    CHECK(c.addr.uri.host == "198.51.100.20");
    CHECK(value_of(m, HeaderId::RecordRoute) == "<sip:proxy.example.net;lr>");
    // request.h: a response given to parse_request_core is BadRequestUri.
    RequestCore core;
    CHECK(parse_request_core(m, f.status, core) == Fault::BadRequestUri);
}

void check_valid_response_302(const Fx& f) {
    const Message& m = f.msg;
    CHECK(m.version == "SIP/2.0");
    const Contact c0 = contact_of(nth_value(m, HeaderId::Contact, 0));
    CHECK(c0.addr.uri.host == "198.51.100.30");
    CHECK(c0.q == 1000);
    CHECK(c0.expires == 3544);
    const Contact c1 = contact_of(nth_value(m, HeaderId::Contact, 1));
    CHECK(c1.addr.uri.port == 5062);
    CHECK(c1.q == 500);
    CHECK(c1.expires == 120);
    CHECK(from_to_of(value_of(m, HeaderId::To)).tag == "0123456789abcdef");
    CHECK(cseq_of(value_of(m, HeaderId::CSeq)).number == 7);
}

void check_valid_register_authorization(const Fx& f) {
    const Message& m = f.msg;
    CHECK(m.count(HeaderId::Authorization) == 1);
    DigestCredentials d;
    CHECK(parse_digest_credentials(value_of(m, HeaderId::Authorization), d));
    CHECK(d.username == "erin");
    CHECK(d.realm == "example.com");
    CHECK(d.nonce == "5f1c0e7a9b3d2c4e6a8b0d1f3e5a7c9b");
    CHECK(d.uri == "sip:example.com");
    CHECK(d.response == "0b9e1d8c7a6f5e4d3c2b1a0f9e8d7c6b");
    CHECK(d.algorithm == "MD5");
    CHECK(d.cnonce == "4e7a1b9c");
    CHECK(d.opaque == "c0ffee42");
    CHECK(d.qop == "auth");
    CHECK(d.nc == "00000001");
    CHECK(f.core.top_via.has_rport);
    CHECK(f.core.top_via.rport == "");
    check_core_addresses(f, "auth-f", "", "auth-1@192.0.2.160", 2, Method::Register);
}

void check_valid_options_server(const Fx& f) {
    CHECK(f.core.request_uri.scheme == Scheme::Sip);
    CHECK(f.core.request_uri.user == "");
    CHECK(f.core.request_uri.host == "example.com");
    CHECK(value_of(f.msg, "Accept") == "application/sdp");
    CHECK(f.core.top_via.host == "10.0.0.5");
    check_core_addresses(f, "hc-1", "", "health-check-1@10.0.0.5", 1, Method::Options);
    CHECK(aor_of(f.core.request_uri, "example.com", AorStatus::NoUser).empty());
}

void check_valid_max_forwards_zero(const Fx& f) {
    CHECK(f.core.has_max_forwards);
    CHECK(f.core.max_forwards == 0);
    check_core_addresses(f, "mf0", "", "max-forwards-0@192.0.2.170", 1, Method::Invite);
}

void check_valid_bare_lf(const Fx& f) {
    const Message& m = f.msg;
    CHECK(value_of(m, HeaderId::Via) == "SIP/2.0/UDP 192.0.2.180;branch=z9hG4bKbarelf");
    CHECK(value_of(m, HeaderId::ContentType) == "text/plain");
    CHECK(m.body == "bare LF\n");
    CHECK(m.content_length == 8);
    CHECK_FALSE(f.core.has_max_forwards);
    CHECK(f.core.max_forwards == 70);
    CHECK(f.core.top_via.branch == "z9hG4bKbarelf");
    check_core_addresses(f, "lf-f", "", "bare-lf-1@192.0.2.180", 4, Method::Message);
}

void check_valid_no_content_length(const Fx& f) {
    CHECK_FALSE(f.msg.has_content_length);
    CHECK(f.msg.body == "Hello, no length here.\r\n");
    CHECK(f.msg.body.data() == f.bytes.data() + f.bytes.size() - 24);
    check_core_addresses(f, "nl-f", "", "no-length-1@192.0.2.181", 1, Method::Message);
}

void check_valid_content_length_short(const Fx& f) {
    CHECK(f.msg.has_content_length);
    CHECK(f.msg.content_length == 10);
    CHECK(f.msg.body == "0123456789");
    check_core_addresses(f, "sh-f", "", "short-length-1@192.0.2.182", 1, Method::Message);
}

void check_valid_duplicate_content_length(const Fx& f) {
    CHECK(f.msg.count(HeaderId::ContentLength) == 2);
    CHECK(f.msg.content_length == 5);
    CHECK(f.msg.body == "hello");
    check_core_addresses(f, "dup-f", "", "dup-length-1@192.0.2.183", 1, Method::Message);
}

void check_valid_ack(const Fx& f) {
    CHECK_FALSE(f.core.has_max_forwards);
    CHECK(f.core.request_uri.port == 5060);
    CHECK(f.core.top_via.branch == "z9hG4bKackack");
    check_core_addresses(f, "ack-f", "ack-t", "ack-1@192.0.2.190", 10, Method::Ack);
}

void check_valid_cancel(const Fx& f) {
    CHECK(f.core.top_via.branch == "z9hG4bKcancel1");
    CHECK(f.core.top_via.has_rport);
    check_core_addresses(f, "cn-f", "", "cancel-1@192.0.2.191", 11, Method::Cancel);
}

constexpr std::string_view kOddMethod = "!odd_Method*+`.%'~0123";

void check_valid_token_characters(const Fx& f) {
    const Message& m = f.msg;
    CHECK(f.core.cseq.method == Method::Unknown);
    CHECK(f.core.cseq.method_text == kOddMethod);
    CHECK(f.core.cseq.number == 139122385);
    CHECK(f.core.call_id == "tok.%*+_`'~!-1@192.0.2.210");
    // RFC 3261 §20.10: a token display name needs no white space before '<'.
    CHECK(f.core.from.addr.display_name == "caller");
    CHECK(f.core.from.addr.uri.user == "caller");
    CHECK(f.core.from.tag == "tok-f");
    CHECK(f.core.to.addr.display_name == "Callee Name");
    CHECK(f.core.to.addr.uri.user == "tokens");
    CHECK(value_of(m, "X-Ext!.%*+_`'~") == "token characters in a header name");
    CHECK(m.count(HeaderId::Via) == 4);
    // RFC 3261 §20.42: transport is any token.
    CHECK(via_of(nth_value(m, HeaderId::Via, 1)).transport == "SCTP");
    CHECK(via_of(nth_value(m, HeaderId::Via, 2)).transport == "TLS-SCTP");
    const Via novel = via_of(nth_value(m, HeaderId::Via, 3));
    CHECK(novel.transport == "NOVEL");
    CHECK(novel.host == "relay3.example.com");
    CHECK(novel.branch == "z9hG4bKnovel");
}

void check_valid_two_messages(const Fx& f) {
    // One datagram, one message: Content-Length 0 ends it; the INVITE after it is ignored
    // (RFC 3261 §18.3).
    const Message& m = f.msg;
    CHECK(m.has_content_length);
    CHECK(m.content_length == 0);
    CHECK(m.body.empty());
    CHECK(m.count(HeaderId::Via) == 1);
    CHECK(f.core.top_via.branch == "z9hG4bKfirst");
    check_core_addresses(f, "two-f", "", "two-messages-1@192.0.2.211", 1, Method::Register);
    CHECK(f.bytes.find("INVITE sip:two@example.com") != std::string::npos);
}

void check_valid_user_with_semicolon(const Fx& f) {
    // RFC 3261 §25.1: ';' is a user-unreserved character; the URI parameters begin after the host.
    CHECK(f.core.request_uri_status == UriStatus::Ok);
    CHECK(f.core.request_uri.user == "alice;day=tuesday");
    CHECK(f.core.request_uri.host == "example.com");
    CHECK(f.core.request_uri.params == "");
    CHECK(f.core.to.addr.uri.user == "alice;day=tuesday");
    CHECK(f.core.to.addr.uri.host == "example.com");
    check_core_addresses(f, "semi-f", "", "user-semicolon-1@192.0.2.212", 1, Method::Options);
    CHECK(aor_of(f.core.request_uri, "") == "sip:alice;day=tuesday@example.com");
}

void check_valid_binary_body(const Fx& f) {
    std::string want("\x00\x01\xff\xfe\r\n\r\nnot a header: x\r\n", 25);
    for (int c = 0x80; c < 0x90; ++c) want += static_cast<char>(c);
    want += std::string(2, '\0');
    REQUIRE(want.size() == 43);
    CHECK(f.msg.body == want);
    CHECK(f.msg.content_length == 43);
    CHECK(value_of(f.msg, HeaderId::ContentType) == "application/octet-stream");
    check_core_addresses(f, "bin-f", "", "binary-body-1@192.0.2.213", 1, Method::Message);
}

void check_valid_response_reason(const Fx& f) {
    CHECK(f.msg.version == "SIP/2.0");
    CHECK(cseq_of(value_of(f.msg, HeaderId::CSeq)).number > 0);
    CHECK(f.msg.request_uri.empty());
}

void check_valid_no_branch_rfc2543(const Fx& f) {
    CHECK(f.core.top_via.branch == "");
    CHECK(f.core.top_via.host == "192.0.2.220");
    CHECK(f.core.top_via.port == 5060);
    CHECK(f.core.top_via.params == "");
    check_core_addresses(f, "", "", "rfc2543-1@192.0.2.220", 1, Method::Invite);
}

// ----------------------------------------------------------------------------- invalid fixtures

// The fields checked before the fault are filled: a 400 can copy them.
void check_invalid_missing_to(const Fx& f) {
    CHECK(f.core.top_via.branch == "z9hG4bKbase");
    CHECK(f.core.from.tag == "base-f");
}
void check_invalid_missing_from(const Fx& f) {
    CHECK(f.core.top_via.branch == "z9hG4bKbase");
    CHECK(f.msg.find(HeaderId::From) == nullptr);
}
void check_invalid_missing_call_id(const Fx& f) {
    CHECK(f.core.top_via.branch == "z9hG4bKbase");
    CHECK(f.core.from.tag == "base-f");
    CHECK(f.core.to.addr.uri.user == "bob");
}
void check_invalid_missing_cseq(const Fx& f) {
    CHECK(f.core.top_via.branch == "z9hG4bKbase");
    CHECK(f.core.call_id == "base-1@192.0.2.200");
}
void check_invalid_missing_via(const Fx& f) {
    CHECK(f.msg.count(HeaderId::Via) == 0);
    CHECK(fault_is_unanswerable(f.fault));
}
void check_invalid_bad_via(const Fx& f) {
    Via v;
    CHECK_FALSE(parse_via(value_of(f.msg, HeaderId::Via), v));
    CHECK(fault_is_unanswerable(f.fault));
}
void check_invalid_content_length_too_large(const Fx& f) {
    CHECK(value_of(f.msg, HeaderId::ContentLength) == "300");
    CHECK(value_of(f.msg, HeaderId::CallId) == "base-1@192.0.2.200");
}
void check_invalid_content_length_conflict(const Fx& f) {
    CHECK(f.msg.count(HeaderId::ContentLength) == 2);
    CHECK(nth_value(f.msg, HeaderId::ContentLength, 1) == "14");
}
void check_invalid_from_unparsable(const Fx& f) {
    FromTo ft;
    CHECK_FALSE(parse_from_to(value_of(f.msg, HeaderId::From), ft));
}
void check_invalid_bare_cr_in_require(const Fx& f) {
    // Kept as sent, so the header is there to see, but nothing may proceed to echo it.
    CHECK(value_of(f.msg, HeaderId::Require) == "foo\rX-Injected: registrar");
    CHECK(f.msg.find("X-Injected") == nullptr);
}
void check_invalid_to_unterminated_angle(const Fx& f) {
    FromTo ft;
    CHECK_FALSE(parse_from_to(value_of(f.msg, HeaderId::To), ft));
    CHECK(f.core.from.tag == "base-f");
}
void check_invalid_cseq_bad(const Fx& f) {
    CSeq c;
    CHECK_FALSE(parse_cseq(value_of(f.msg, HeaderId::CSeq), c));
}
void check_invalid_cseq_method_mismatch(const Fx& f) {
    const CSeq c = cseq_of(value_of(f.msg, HeaderId::CSeq));
    CHECK(c.number == 1);
    CHECK(c.method == Method::Bye);
}
void check_invalid_duplicate_from(const Fx& f) {
    CHECK(f.msg.count(HeaderId::From) == 2);
    // Each From alone is well-formed: the fault is the repetition.
    CHECK(from_to_of(nth_value(f.msg, HeaderId::From, 0)).tag == "base-f");
    CHECK(from_to_of(nth_value(f.msg, HeaderId::From, 1)).tag == "other-f");
}
void check_invalid_call_id_with_space(const Fx& f) {
    CHECK(value_of(f.msg, HeaderId::CallId) == "base 1@192.0.2.200");
    CHECK(f.core.to.addr.uri.user == "bob");
}
void check_invalid_cseq_method_case(const Fx& f) {
    const CSeq c = cseq_of(value_of(f.msg, HeaderId::CSeq));
    CHECK(c.method == Method::Unknown);
    CHECK(c.method_text == "invite");
}
void check_invalid_max_forwards_bad(const Fx& f) {
    uint32_t mf = 0;
    CHECK_FALSE(parse_max_forwards(value_of(f.msg, HeaderId::MaxForwards), mf));
}
void check_invalid_request_uri_bad_ipv6(const Fx& f) {
    Uri u;
    CHECK(parse_uri(f.msg.request_uri, u) == UriStatus::Malformed);
    CHECK(f.core.request_uri_status == UriStatus::Malformed);
}
void check_invalid_too_many_headers(const Fx& f) {
    // The headers kept are valid (message.h): the first ones of the message, in order.
    CHECK(f.msg.header_count <= 96);
    CHECK(f.msg.header_count >= 7);
    CHECK(f.msg.headers[0].id == HeaderId::Via);
    CHECK(f.msg.headers[0].value == "SIP/2.0/UDP 192.0.2.200:5060;branch=z9hG4bKbase;rport");
    CHECK(f.msg.headers[6].id == HeaderId::Contact);
    for (std::size_t i = 7; i < f.msg.header_count && i < f.msg.headers.size(); ++i) {
        INFO("header ", i);
        CHECK(f.msg.headers[i].name == "X-Filler-" +
                                           std::string(3 - std::to_string(i - 6).size(), '0') +
                                           std::to_string(i - 6));
    }
    // With room for all 108 entries (the cap clamps to the capacity of 128) the same bytes parse.
    auto m = std::make_unique<Message>();
    ParseLimits roomy;
    roomy.max_headers = 1000;
    CHECK(parse_message(f.bytes, *m, roomy) == ParseStatus::Ok);
    CHECK(m->header_count == 108);
    ParseLimits exact;
    exact.max_headers = 107;
    CHECK(parse_message(f.bytes, *m, exact) == ParseStatus::TooManyHeaders);
}

// --------------------------------------------------------------------------------------- table

struct Expected {
    std::string_view file;
    ParseStatus status = ParseStatus::Ok;
    Fault fault = Fault::None;  // requests that frame (Ok or BadContentLength)
    bool is_request = true;
    Method method = Method::Unknown;
    std::string_view method_name;
    std::string_view request_uri;
    uint16_t status_code = 0;  // responses
    std::string_view reason;
    std::size_t header_count = 0;  // entries after list splitting; Ok and BadContentLength
    std::size_t body_size = 0;     // Ok only
    void (*check)(const Fx&) = nullptr;
};

using PS = ParseStatus;
using M = Method;
using Check = void (*)(const Fx&);

// "METHOD request-uri" as the start line reads, split at its space.
Expected with_start(Expected e, Method method, std::string_view start) {
    const std::size_t sp = start.find(' ');
    e.method = method;
    e.method_name = start.substr(0, sp);
    e.request_uri = start.substr(sp + 1);
    return e;
}
// A request that frames and passes parse_request_core.
Expected request(std::string_view file, Method method, std::string_view start, std::size_t headers,
                 std::size_t body, Check check) {
    Expected e;
    e.file = file;
    e.header_count = headers;
    e.body_size = body;
    e.check = check;
    return with_start(e, method, start);
}
// A request that frames but fails parse_request_core with `fault`.
Expected faulty(std::string_view file, Fault fault, Method method, std::string_view start,
                std::size_t headers, Check check) {
    Expected e = request(file, method, start, headers, 0, check);
    e.fault = fault;
    return e;
}
// A request whose Content-Length is bad: headers valid, Fault::BadContentLength.
Expected bad_length(std::string_view file, Method method, std::string_view start,
                    std::size_t headers, Check check) {
    Expected e = faulty(file, Fault::BadContentLength, method, start, headers, check);
    e.status = ParseStatus::BadContentLength;
    return e;
}
// A request with a CR that ends no line outside the headers a 400 copies: Fault::BareCr.
Expected bare_cr(std::string_view file, Method method, std::string_view start, std::size_t headers,
                 Check check) {
    Expected e = faulty(file, Fault::BareCr, method, start, headers, check);
    e.status = ParseStatus::BareCr;
    return e;
}
Expected too_many_headers(std::string_view file, Method method, std::string_view start,
                          Check check) {
    Expected e = request(file, method, start, 0, 0, check);
    e.status = ParseStatus::TooManyHeaders;
    return e;
}
Expected response(std::string_view file, uint16_t code, std::string_view reason,
                  std::size_t headers, Check check) {
    Expected e;
    e.file = file;
    e.is_request = false;
    e.status_code = code;
    e.reason = reason;
    e.header_count = headers;
    e.check = check;
    return e;
}
// Framing fails: nothing else to check.
Expected unframed(std::string_view file, ParseStatus status) {
    Expected e;
    e.file = file;
    e.status = status;
    return e;
}

constexpr std::string_view kUnusualReason =
    "Tr\xc3\xa8s bien = 2**3 * 5**2, \xe5\xa5\xbd!";  // UTF-8 "Très bien = ..., 好!"

const std::vector<Expected>& table() {
    static const std::vector<Expected> t = {
        // valid
        request("valid_ack.sip", M::Ack, "ACK sip:bob@192.0.2.4:5060", 6, 0, check_valid_ack),
        request("valid_bare_lf.sip", M::Message, "MESSAGE sip:lf@example.com", 7, 8,
                check_valid_bare_lf),
        request("valid_cancel.sip", M::Cancel, "CANCEL sip:bob@example.com", 7, 0,
                check_valid_cancel),
        request("valid_compact_forms.sip", M::Invite, "INVITE sip:compact@example.com", 15, 94,
                check_valid_compact_forms),
        request("valid_compact_refer.sip", M::Refer, "REFER sip:bob@192.0.2.100", 10, 0,
                check_valid_compact_refer),
        request("valid_compact_subscribe.sip", M::Subscribe, "SUBSCRIBE sip:presentity@example.com",
                11, 0, check_valid_compact_subscribe),
        request("valid_content_length_short.sip", M::Message, "MESSAGE sip:short@example.com", 8,
                10, check_valid_content_length_short),
        request("valid_duplicate_content_length.sip", M::Message, "MESSAGE sip:dup@example.com", 9,
                5, check_valid_duplicate_content_length),
        request("valid_escaped_uri.sip", M::Invite,
                "INVITE sip:sips%3Adora%40secure.example.org@example.net", 8, 0,
                check_valid_escaped_uri),
        request("valid_folding.sip", M::Invite, "INVITE sip:fold@example.com", 9, 0,
                check_valid_folding),
        request("valid_invite_sdp.sip", M::Invite, "INVITE sip:bob@beta.example.com", 21, 235,
                check_valid_invite_sdp),
        request("valid_ipv6.sip", M::Invite, "INVITE sip:bob@[2001:db8::10]:5070;transport=udp", 9,
                0, check_valid_ipv6),
        request("valid_long_headers.sip", M::Invite, "INVITE sip:long@example.com", 40, 0,
                check_valid_long_headers),
        request("valid_max_forwards_zero.sip", M::Invite, "INVITE sip:loop@example.com", 7, 0,
                check_valid_max_forwards_zero),
        request("valid_mixed_case_names.sip", M::Bye, "BYE sip:bob@192.0.2.80", 7, 0,
                check_valid_mixed_case_names),
        request("valid_multi_value_lines.sip", M::Register, "REGISTER sip:registrar.example.com",
                13, 0, check_valid_multi_value_lines),
        request("valid_no_content_length.sip", M::Message, "MESSAGE sip:nolen@example.com", 7, 24,
                check_valid_no_content_length),
        request("valid_no_space_after_colon.sip", M::Options, "OPTIONS sip:erin@gamma.example.com",
                8, 0, check_valid_no_space_after_colon),
        request("valid_odd_whitespace.sip", M::Invite, "INVITE sip:ws@example.com", 8, 0,
                check_valid_odd_whitespace),
        request("valid_options_server.sip", M::Options, "OPTIONS sip:example.com", 8, 0,
                check_valid_options_server),
        request("valid_register_authorization.sip", M::Register, "REGISTER sip:example.com", 10, 0,
                check_valid_register_authorization),
        request("valid_register_contacts.sip", M::Register, "REGISTER sip:example.com", 17, 0,
                check_valid_register_contacts),
        request("valid_register_path.sip", M::Register, "REGISTER sip:example.com", 14, 0,
                check_valid_register_path),
        request("valid_register_star.sip", M::Register, "REGISTER sip:example.com", 9, 0,
                check_valid_register_star),
        response("valid_response_180.sip", 180, "Ringing", 9, check_valid_response_180),
        response("valid_response_302.sip", 302, "Moved Temporarily", 8, check_valid_response_302),
        request("valid_sips.sip", M::Invite, "INVITE sips:bob@secure.example.com", 8, 0,
                check_valid_sips),
        request("valid_tel_uri.sip", M::Invite, "INVITE tel:+1-201-555-0123;ext=42", 8, 0,
                check_valid_tel_uri),
        request("valid_unknown_headers.sip", M::Message, "MESSAGE sip:user2@example.com", 14, 4,
                check_valid_unknown_headers),
        request("valid_unknown_method.sip", M::Unknown, "NEWMETHOD sip:user@example.com", 8, 43,
                check_valid_unknown_method),
        request("valid_unknown_scheme_http.sip", M::Invite,
                "INVITE http://www.example.com/call?who=bob", 8, 0,
                check_valid_unknown_scheme_http),
        request("valid_unknown_scheme_urn.sip", M::Invite, "INVITE urn:service:sos", 8, 0,
                check_valid_unknown_scheme_urn),

        request("valid_token_characters.sip", M::Unknown,
                "!odd_Method*+`.%'~0123 sip:tokens@example.com", 11, 0,
                check_valid_token_characters),
        request("valid_two_messages.sip", M::Register, "REGISTER sip:example.com", 8, 0,
                check_valid_two_messages),
        request("valid_user_with_semicolon.sip", M::Options,
                "OPTIONS sip:alice;day=tuesday@example.com", 7, 0, check_valid_user_with_semicolon),
        request("valid_binary_body.sip", M::Message, "MESSAGE sip:bin@example.com", 8, 43,
                check_valid_binary_body),
        response("valid_response_unusual_reason.sip", 200, kUnusualReason, 6,
                 check_valid_response_reason),
        response("valid_response_empty_reason.sip", 100, "", 6, check_valid_response_reason),
        request("valid_no_branch_rfc2543.sip", M::Invite, "INVITE sip:old@example.com", 7, 0,
                check_valid_no_branch_rfc2543),

        // invalid: frames, but a request fault
        faulty("invalid_missing_from.sip", Fault::MissingFrom, M::Invite,
               "INVITE sip:bob@example.com", 7, check_invalid_missing_from),
        faulty("invalid_missing_to.sip", Fault::MissingTo, M::Invite, "INVITE sip:bob@example.com",
               7, check_invalid_missing_to),
        faulty("invalid_missing_call_id.sip", Fault::MissingCallId, M::Invite,
               "INVITE sip:bob@example.com", 7, check_invalid_missing_call_id),
        faulty("invalid_missing_cseq.sip", Fault::MissingCSeq, M::Invite,
               "INVITE sip:bob@example.com", 7, check_invalid_missing_cseq),
        faulty("invalid_missing_via.sip", Fault::NoVia, M::Invite, "INVITE sip:bob@example.com", 7,
               check_invalid_missing_via),
        faulty("invalid_bad_via.sip", Fault::BadVia, M::Invite, "INVITE sip:bob@example.com", 8,
               check_invalid_bad_via),
        faulty("invalid_from_unterminated_quote.sip", Fault::BadFrom, M::Invite,
               "INVITE sip:bob@example.com", 8, check_invalid_from_unparsable),
        faulty("invalid_to_unterminated_angle.sip", Fault::BadTo, M::Invite,
               "INVITE sip:bob@example.com", 8, check_invalid_to_unterminated_angle),
        faulty("invalid_cseq_non_numeric.sip", Fault::BadCSeq, M::Invite,
               "INVITE sip:bob@example.com", 8, check_invalid_cseq_bad),
        faulty("invalid_cseq_negative.sip", Fault::BadCSeq, M::Invite, "INVITE sip:bob@example.com",
               8, check_invalid_cseq_bad),
        faulty("invalid_cseq_out_of_range.sip", Fault::BadCSeq, M::Invite,
               "INVITE sip:bob@example.com", 8, check_invalid_cseq_bad),
        faulty("invalid_cseq_method_mismatch.sip", Fault::CSeqMethodMismatch, M::Invite,
               "INVITE sip:bob@example.com", 8, check_invalid_cseq_method_mismatch),
        // RFC 3261 §20: From and Call-ID appear once; callid = word ["@" word], no white space.
        faulty("invalid_duplicate_from.sip", Fault::BadFrom, M::Invite,
               "INVITE sip:bob@example.com", 9, check_invalid_duplicate_from),
        faulty("invalid_call_id_with_space.sip", Fault::BadCallId, M::Invite,
               "INVITE sip:bob@example.com", 8, check_invalid_call_id_with_space),
        // RFC 4475 §3.1.2.6: the Request-URI is never enclosed in '<' '>'.
        faulty("invalid_request_uri_in_angle_brackets.sip", Fault::BadRequestUri, M::Invite,
               "INVITE <sip:bob@example.com>", 8, nullptr),
        // RFC 4475 §3.1.2.14: an unquoted display name may not contain a comma.
        faulty("invalid_from_unquoted_comma.sip", Fault::BadFrom, M::Invite,
               "INVITE sip:bob@example.com", 8, check_invalid_from_unparsable),
        // RFC 3261 §7.1: methods are case-sensitive, so "invite" is another method.
        faulty("invalid_cseq_method_case.sip", Fault::CSeqMethodMismatch, M::Invite,
               "INVITE sip:bob@example.com", 8, check_invalid_cseq_method_case),
        faulty("invalid_max_forwards_non_numeric.sip", Fault::BadMaxForwards, M::Invite,
               "INVITE sip:bob@example.com", 8, check_invalid_max_forwards_bad),
        faulty("invalid_max_forwards_too_large.sip", Fault::BadMaxForwards, M::Invite,
               "INVITE sip:bob@example.com", 8, check_invalid_max_forwards_bad),
        faulty("invalid_request_uri_bad_ipv6.sip", Fault::BadRequestUri, M::Invite,
               "INVITE sip:bob@[2001:db8::1", 8, check_invalid_request_uri_bad_ipv6),

        // invalid: Content-Length
        bad_length("invalid_content_length_too_large.sip", M::Invite, "INVITE sip:bob@example.com",
                   9, check_invalid_content_length_too_large),
        bad_length("invalid_content_length_conflict.sip", M::Invite, "INVITE sip:bob@example.com",
                   10, check_invalid_content_length_conflict),
        bad_length("invalid_content_length_non_numeric.sip", M::Invite,
                   "INVITE sip:bob@example.com", 8, nullptr),
        bad_length("invalid_content_length_negative.sip", M::Invite, "INVITE sip:bob@example.com",
                   8, nullptr),

        // invalid: a CR that ends no line (header injection): a 400 when the headers it copies
        // are clean, else nothing to answer.
        bare_cr("invalid_bare_cr_in_require.sip", M::Register, "REGISTER sip:example.com", 9,
                check_invalid_bare_cr_in_require),

        // invalid: caps
        too_many_headers("invalid_too_many_headers.sip", M::Invite, "INVITE sip:bob@example.com",
                         check_invalid_too_many_headers),

        // invalid: framing
        unframed("invalid_empty.sip", PS::Malformed),
        unframed("invalid_garbage_binary.sip", PS::Malformed),
        unframed("invalid_header_without_colon.sip", PS::Malformed),
        unframed("invalid_nul_in_header.sip", PS::Malformed),
        unframed("invalid_bare_cr_in_from.sip", PS::Malformed),
        unframed("invalid_start_line_only.sip", PS::Malformed),
        unframed("invalid_status_code_two_digits.sip", PS::Malformed),
        unframed("invalid_truncated_start_line.sip", PS::Malformed),
        // RFC 3261 §7.1: the Request-URI holds no white space (RFC 4475 §3.1.2.7).
        unframed("invalid_request_uri_with_space.sip", PS::Malformed),
        // Status-Code = 3DIGIT (RFC 4475 §3.1.2.18).
        unframed("invalid_status_code_huge.sip", PS::Malformed),
    };
    return t;
}

const Expected* find_expected(std::string_view file) {
    for (const Expected& e : table())
        if (e.file == file) return &e;
    return nullptr;
}

void check_start_line(const Fx& f, const Expected& e) {
    const Message& m = f.msg;
    CHECK(m.is_request == e.is_request);
    if (e.is_request) {
        CHECK(m.method == e.method);
        CHECK(m.method_name == e.method_name);
        CHECK(m.request_uri == e.request_uri);
    } else {
        CHECK(m.status_code == e.status_code);
        CHECK(m.reason == e.reason);
        CHECK(m.version == "SIP/2.0");
    }
    CHECK(inside(f.bytes, m.method_name));
    CHECK(inside(f.bytes, m.request_uri));
    CHECK(inside(f.bytes, m.reason));
}

void check_headers_consistent(const Fx& f) {
    const Message& m = f.msg;
    for (std::size_t i = 0; i < m.header_count && i < m.headers.size(); ++i) {
        const Header& h = m.headers[i];
        INFO("header ", i, ": ", h.name);
        CHECK(inside(f.bytes, h.name));
        CHECK(inside(f.bytes, h.value));
        CHECK(header_id(h.name) == h.id);
        CHECK_FALSE(h.name.empty());
        // Values are trimmed of surrounding white space.
        if (!h.value.empty()) {
            CHECK_FALSE(base::is_lws(h.value.front()));
            CHECK_FALSE(base::is_lws(h.value.back()));
        }
    }
}

}  // namespace

TEST_CASE("fixtures: every file in tests/data has exactly one table entry and vice versa") {
    const auto files = fixture_files();
    CHECK(files.size() >= 35);
    for (const std::string& file : files) {
        INFO("fixture without a table entry: ", file);
        CHECK(find_expected(file) != nullptr);
    }
    std::size_t valid = 0, invalid = 0;
    for (const Expected& e : table()) {
        INFO("table entry without a file: ", e.file);
        CHECK(std::count(files.begin(), files.end(), std::string(e.file)) == 1);
        std::size_t same = 0;
        for (const Expected& o : table()) same += (o.file == e.file);
        CHECK(same == 1);
        // The name says what the fixture is.
        if (e.file.starts_with("valid_")) {
            ++valid;
            CHECK(e.status == ParseStatus::Ok);
            CHECK(e.fault == Fault::None);
        } else {
            CHECK(e.file.starts_with("invalid_"));
            ++invalid;
            CHECK((e.status != ParseStatus::Ok || e.fault != Fault::None));
        }
        CHECK(e.file.ends_with(".sip"));
    }
    CHECK(valid >= 25);
    CHECK(invalid >= 20);
}

TEST_CASE("fixtures: each parses to exactly its expected result") {
    for (const Expected& e : table()) {
        INFO("fixture ", e.file);
        const auto fx = load(e.file);
        CHECK(fx->status == e.status);
        if (fx->status != e.status) continue;
        if (frames(e.status) || e.status == ParseStatus::TooManyHeaders) check_start_line(*fx, e);
        if (frames(e.status)) {
            CHECK(fx->msg.header_count == e.header_count);
            check_headers_consistent(*fx);
            if (e.status == ParseStatus::Ok) {
                CHECK(fx->msg.body.size() == e.body_size);
                CHECK(inside(fx->bytes, fx->msg.body));
                if (fx->msg.has_content_length) CHECK(fx->msg.content_length == e.body_size);
            }
            if (e.is_request) {
                CHECK(fx->core_parsed);
                CHECK(fx->fault == e.fault);
                CHECK_FALSE(fault_reason(fx->fault).empty());
            }
        }
        if (e.check != nullptr) e.check(*fx);
    }
}

TEST_CASE("fixtures: the corpus uses every compact header form") {
    // RFC 3261 §7.3.3 and later registrations: i m e l c f s k t v o u r b x y.
    constexpr std::string_view kCompact = "imelcfsktvourbxy";
    std::string seen;
    for (const Expected& e : table()) {
        if (!e.file.starts_with("valid_")) continue;
        const auto fx = load(e.file);
        for (std::size_t i = 0; i < fx->msg.header_count && i < fx->msg.headers.size(); ++i) {
            const std::string_view name = fx->msg.headers[i].name;
            if (name.size() == 1) seen += name[0];
        }
    }
    for (char c : kCompact) {
        INFO("compact form never used: ", std::string(1, c));
        CHECK(seen.find(c) != std::string::npos);
    }
}

TEST_CASE("fixtures: reparsing into a used Message gives the same result") {
    // A Message reused across datagrams (a worker's slot) must not keep state from the last one.
    auto m = std::make_unique<Message>();
    for (const Expected& e : table()) {
        INFO("fixture ", e.file);
        const auto fx = load(e.file);
        const ParseStatus st = parse_message(fx->bytes, *m);
        CHECK(st == fx->status);
        if (!frames(st)) continue;
        CHECK(m->header_count == fx->msg.header_count);
        CHECK(m->is_request == fx->msg.is_request);
        CHECK(m->has_content_length == fx->msg.has_content_length);
        if (st == ParseStatus::Ok) CHECK(m->body == fx->msg.body);
    }
}

}  // namespace sipr::sip
