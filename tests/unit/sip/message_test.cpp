// parse_message on inline messages: header names and compact forms, folding, list splitting, caps,
// Content-Length framing, and the small name tables of message.h and method.h.
#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sipr/sip/message.h"
#include "sipr/sip/method.h"

namespace sipr::sip {
namespace {

using namespace std::string_view_literals;

constexpr std::string_view kStart = "INVITE sip:bob@example.com SIP/2.0\r\n";
constexpr std::string_view kVia = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmsg1\r\n";

// A Message is large (128 headers): keep it off the test's stack.
struct Parsed {
    std::string bytes;
    std::unique_ptr<Message> msg = std::make_unique<Message>();
    ParseStatus status = ParseStatus::Malformed;
};

Parsed parse(std::string bytes, const ParseLimits& limits = {}) {
    Parsed p;
    p.bytes = std::move(bytes);
    p.status = parse_message(p.bytes, *p.msg, limits);
    return p;
}

// A request with `headers` (each line ending in CRLF) and then `body`.
std::string request(std::string_view headers, std::string_view body = "") {
    std::string s(kStart);
    s += headers;
    s += "\r\n";
    s += body;
    return s;
}

std::vector<std::string_view> values_of(const Message& m, HeaderId id) {
    std::vector<std::string_view> out;
    for (std::size_t i = 0; i < m.header_count && i < m.headers.size(); ++i)
        if (m.headers[i].id == id) out.push_back(m.headers[i].value);
    return out;
}

void check_values(const Message& m, HeaderId id, std::vector<std::string_view> want) {
    const auto got = values_of(m, id);
    CHECK(got.size() == want.size());
    for (std::size_t i = 0; i < got.size() && i < want.size(); ++i) {
        INFO("element ", i);
        CHECK(got[i] == want[i]);
    }
}

std::string_view value_of(const Message& m, std::string_view name) {
    const Header* h = m.find(name);
    return h ? h->value : "<absent>"sv;
}

struct NamedId {
    std::string_view name;
    HeaderId id;
};

// RFC 3261 §7.3.3 and the compact forms registered since (RFC 3265, 3515, 3892, 4028, 8224, ...).
constexpr std::array<NamedId, 16> kCompact{{
    {"i", HeaderId::CallId},
    {"m", HeaderId::Contact},
    {"e", HeaderId::ContentEncoding},
    {"l", HeaderId::ContentLength},
    {"c", HeaderId::ContentType},
    {"f", HeaderId::From},
    {"s", HeaderId::Subject},
    {"k", HeaderId::Supported},
    {"t", HeaderId::To},
    {"v", HeaderId::Via},
    {"o", HeaderId::Event},
    {"u", HeaderId::AllowEvents},
    {"r", HeaderId::ReferTo},
    {"b", HeaderId::ReferredBy},
    {"x", HeaderId::SessionExpires},
    {"y", HeaderId::Identity},
}};

constexpr std::array<NamedId, 33> kLong{{
    {"Via", HeaderId::Via},
    {"From", HeaderId::From},
    {"To", HeaderId::To},
    {"Call-ID", HeaderId::CallId},
    {"CSeq", HeaderId::CSeq},
    {"Max-Forwards", HeaderId::MaxForwards},
    {"Contact", HeaderId::Contact},
    {"Expires", HeaderId::Expires},
    {"Require", HeaderId::Require},
    {"Proxy-Require", HeaderId::ProxyRequire},
    {"Supported", HeaderId::Supported},
    {"Unsupported", HeaderId::Unsupported},
    {"Content-Length", HeaderId::ContentLength},
    {"Content-Type", HeaderId::ContentType},
    {"Content-Encoding", HeaderId::ContentEncoding},
    {"Authorization", HeaderId::Authorization},
    {"Proxy-Authorization", HeaderId::ProxyAuthorization},
    {"WWW-Authenticate", HeaderId::WwwAuthenticate},
    {"Route", HeaderId::Route},
    {"Record-Route", HeaderId::RecordRoute},
    {"Path", HeaderId::Path},
    {"Allow", HeaderId::Allow},
    {"Subject", HeaderId::Subject},
    {"Event", HeaderId::Event},
    {"Allow-Events", HeaderId::AllowEvents},
    {"Refer-To", HeaderId::ReferTo},
    {"Referred-By", HeaderId::ReferredBy},
    {"Session-Expires", HeaderId::SessionExpires},
    {"Identity", HeaderId::Identity},
    {"User-Agent", HeaderId::UserAgent},
    {"Min-Expires", HeaderId::MinExpires},
    {"Retry-After", HeaderId::RetryAfter},
    {"Date", HeaderId::Date},
}};

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return out;
}
std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}
// Alternating case: "vIa", "cAlL-Id".
std::string zigzag(std::string_view s) {
    std::string out = lower(s);
    for (std::size_t i = 1; i < out.size(); i += 2)
        if (out[i] >= 'a' && out[i] <= 'z') out[i] = static_cast<char>(out[i] - 'a' + 'A');
    return out;
}

}  // namespace

TEST_CASE("header_id: every compact form maps to its header, in either case") {
    for (const auto& entry : kCompact) {
        // Not a structured binding: clang 14 cannot capture one in INFO's lambda.
        const auto name = entry.name;
        const auto id = entry.id;
        INFO("compact form ", name);
        CHECK(header_id(name) == id);
        CHECK(header_id(upper(name)) == id);
    }
    // Single letters that are not one of ours stay Other (a, j and d are compact forms of
    // headers we keep raw; z is unassigned).
    for (std::string_view other : {"a"sv, "d"sv, "j"sv, "z"sv, "A"sv, "Z"sv}) {
        INFO("letter ", other);
        CHECK(header_id(other) == HeaderId::Other);
    }
}

TEST_CASE("header_id: long names resolve case-insensitively") {
    for (const auto& entry : kLong) {
        const auto name = entry.name;
        const auto id = entry.id;
        INFO("header ", name);
        CHECK(header_id(name) == id);
        CHECK(header_id(lower(name)) == id);
        CHECK(header_id(upper(name)) == id);
        CHECK(header_id(zigzag(name)) == id);
    }
    for (std::string_view other :
         {""sv, "Vias"sv, "Fro"sv, "Call_ID"sv, "X-Via"sv, "Via "sv, " Via"sv, "Content-Lengths"sv,
          "CallID"sv, "Accept"sv, "P-Asserted-Identity"sv, "Identity-Info"sv}) {
        INFO("not ours: '", other, "'");
        CHECK(header_id(other) == HeaderId::Other);
    }
}

TEST_CASE("is_list_header: exactly the comma-list headers") {
    const std::set<HeaderId> lists = {
        HeaderId::Via,         HeaderId::Contact, HeaderId::Route,        HeaderId::RecordRoute,
        HeaderId::Path,        HeaderId::Require, HeaderId::ProxyRequire, HeaderId::Supported,
        HeaderId::Unsupported, HeaderId::Allow};
    for (auto i = 0; i < static_cast<int>(HeaderId::kCount); ++i) {
        const auto id = static_cast<HeaderId>(i);
        INFO("HeaderId ", i);
        CHECK(is_list_header(id) == (lists.count(id) == 1));
    }
}

TEST_CASE("parse_message: header names are case-insensitive and compact forms resolve") {
    const auto p =
        parse(request("vIA: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n"
                      "FROM: <sip:a@example.com>;tag=1\r\n"
                      "t: <sip:bob@example.com>\r\n"
                      "I: abc@192.0.2.1\r\n"
                      "cseq: 1 INVITE\r\n"
                      "X-Custom: one\r\n"
                      "L: 0\r\n"));
    REQUIRE(p.status == ParseStatus::Ok);
    const Message& m = *p.msg;
    REQUIRE(m.header_count == 7);
    CHECK(m.headers[0].id == HeaderId::Via);
    CHECK(m.headers[0].name == "vIA");
    CHECK(m.headers[1].id == HeaderId::From);
    CHECK(m.headers[2].id == HeaderId::To);
    CHECK(m.headers[3].id == HeaderId::CallId);
    CHECK(m.headers[3].name == "I");
    CHECK(m.headers[4].id == HeaderId::CSeq);
    CHECK(m.headers[5].id == HeaderId::Other);
    CHECK(m.headers[6].id == HeaderId::ContentLength);
    // find(name) resolves long and compact forms in any case to the same entry.
    CHECK(m.find("Call-ID") == &m.headers[3]);
    CHECK(m.find("i") == &m.headers[3]);
    CHECK(m.find("CALL-ID") == &m.headers[3]);
    CHECK(m.find("To") == &m.headers[2]);
    CHECK(m.find("x-custom") == &m.headers[5]);
    CHECK(m.find("X-Other") == nullptr);
    CHECK(m.find(HeaderId::Via) == &m.headers[0]);
    CHECK(m.find(HeaderId::Contact) == nullptr);
    CHECK(m.count(HeaderId::Via) == 1);
    CHECK(m.count(HeaderId::Contact) == 0);
    CHECK(m.has_content_length);
    CHECK(m.content_length == 0);
}

TEST_CASE("parse_message: white space around the colon is not part of name or value") {
    const auto p =
        parse(request("Via   :   SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa   \r\n"
                      "Max-Forwards\t:\t70\t\r\n"
                      "Call-ID:x@y\r\n"
                      "Subject:\r\n"));
    REQUIRE(p.status == ParseStatus::Ok);
    const Message& m = *p.msg;
    REQUIRE(m.header_count == 4);
    CHECK(m.headers[0].name == "Via");
    CHECK(m.headers[0].value == "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa");
    CHECK(m.headers[1].name == "Max-Forwards");
    CHECK(m.headers[1].id == HeaderId::MaxForwards);
    CHECK(m.headers[1].value == "70");
    CHECK(m.headers[2].value == "x@y");
    // An empty value is legal (RFC 3261 §7.3.1, e.g. an empty Subject).
    CHECK(m.headers[3].id == HeaderId::Subject);
    CHECK(m.headers[3].value == "");
}

TEST_CASE("parse_message: folded lines stay inside the value, which is trimmed") {
    const auto p =
        parse(request("Subject:   first line \r\n"
                      "   second line\r\n"
                      "\tthird line   \r\n"
                      "Via: SIP/2.0/UDP 192.0.2.1\r\n"
                      " ;branch=z9hG4bKfold\r\n"
                      "To:\r\n"
                      "  <sip:bob@example.com>\r\n"
                      "Call-ID: after-fold@x\r\n"));
    REQUIRE(p.status == ParseStatus::Ok);
    const Message& m = *p.msg;
    REQUIRE(m.header_count == 4);
    CHECK(m.headers[0].value == "first line \r\n   second line\r\n\tthird line");
    CHECK(m.headers[1].value == "SIP/2.0/UDP 192.0.2.1\r\n ;branch=z9hG4bKfold");
    CHECK(m.headers[2].id == HeaderId::To);
    CHECK(m.headers[2].value == "<sip:bob@example.com>");
    CHECK(m.headers[3].value == "after-fold@x");
}

TEST_CASE("parse_message: folding with bare LF line ends") {
    const std::string bytes =
        "OPTIONS sip:example.com SIP/2.0\n"
        "Subject: one\n"
        " two\n"
        "Call-ID: lf@x\n"
        "\n";
    const auto p = parse(bytes);
    REQUIRE(p.status == ParseStatus::Ok);
    REQUIRE(p.msg->header_count == 2);
    CHECK(p.msg->headers[0].value == "one\n two");
    CHECK(p.msg->headers[1].value == "lf@x");
    CHECK(p.msg->method == Method::Options);
    CHECK(p.msg->body.empty());
}

// The mandatory headers of a request, each line ending in CRLF, with `extra` after the Via.
std::string core_headers(std::string_view from_display = "", std::string_view extra = "") {
    std::string h(kVia);
    h += extra;
    h += "From: ";
    h += from_display;
    h += "<sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@example.com>\r\nCall-ID: cr@x\r\n"
         "CSeq: 1 INVITE\r\nContent-Length: 0\r\n";
    return h;
}

TEST_CASE("parse_message: a CR that ends no line is never Ok (header injection)") {
    // Outside the headers a response copies: BareCr, the headers framed as sent.
    for (std::string_view extra :
         {"Require: foo\rX-Injected: registrar\r\n"sv, "Subject: a\rb\r\n"sv,
          "Subject: trailing\r\r\n"sv, "Subject: a\r b\r\n"sv, "User-Agent: \rx\r\n"sv,
          "Supported: path,\rX-Injected: y\r\n"sv, "X-Other: \r\r\r\n"sv,
          "Subject: a\r\n \rb\r\n"sv}) {
        CAPTURE(extra);
        const auto p = parse(request(core_headers("", extra)));
        CHECK(p.status == ParseStatus::BareCr);
        CHECK(p.msg->is_request);
        CHECK(p.msg->find("X-Injected") == nullptr);
        CHECK(p.msg->find(HeaderId::CSeq) != nullptr);
    }
    CHECK(parse(request(core_headers("", "Require: foo\rX-Injected: registrar\r\n")))
              .msg->find(HeaderId::Require)
              ->value == "foo\rX-Injected: registrar");
    // In a header every response copies, or in the start line: nothing can be answered.
    const std::string_view copied[] = {
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\rX-Injected: v\r\n",
        "From: <sip:a@example.com>;tag=\rX\r\n",
        "To: <sip:b@example.com>\rX-Injected: t\r\n",
        "Call-ID: a\rb\r\n",
        "CSeq: 1\rINVITE\r\n",
        "v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb, SIP/2.0/UDP \r192.0.2.2\r\n",
    };
    for (std::string_view h : copied) {
        CAPTURE(h);
        CHECK(parse(request(std::string(h) + core_headers())).status == ParseStatus::Malformed);
    }
    CHECK(parse(request(core_headers("\"Alice\rX-Injected: redirect\" "))).status ==
          ParseStatus::Malformed);
    CHECK(parse("INVITE sip:bob@example.com\r SIP/2.0\r\n" + core_headers() + "\r\n").status ==
          ParseStatus::Malformed);
    CHECK(parse("INVITE sip:bob@example.com SIP/2.0\r\r\n" + core_headers() + "\r\n").status ==
          ParseStatus::Malformed);
    CHECK(parse("SIP/2.0 200 O\rK\r\n" + core_headers() + "\r\n").status == ParseStatus::Malformed);
    CHECK(parse("\r\r\nINVITE sip:bob@example.com SIP/2.0\r\n" + core_headers() + "\r\n").status ==
          ParseStatus::Malformed);
    // A NUL still wins, and a bad Content-Length does not hide the CR.
    CHECK(parse(request(core_headers("", std::string("Subject: a\r\0\r\n", 14)))).status ==
          ParseStatus::Malformed);
    CHECK(parse(request(core_headers("", "Subject: a\rb\r\nContent-Length: 9\r\n"))).status ==
          ParseStatus::BareCr);
    // Over the header cap with a bare CR among the headers kept: dropped, never TooManyHeaders.
    ParseLimits limits;
    limits.max_headers = 2;
    CHECK(parse(request("Subject: a\rb\r\nCall-ID: x\r\nTo: <sip:b@x>\r\n"), limits).status ==
          ParseStatus::Malformed);
}

TEST_CASE("parse_message: CRs that end lines, in folds and in the body are fine") {
    CHECK(parse(request(core_headers("", "Subject: a\r\n b\r\n"))).status == ParseStatus::Ok);
    CHECK(parse("\r\n\r\n" + request(core_headers())).status == ParseStatus::Ok);
    const auto p = parse(request(core_headers(), "v=0\ra\rb\r\n"));
    CHECK(p.status == ParseStatus::Ok);
    CHECK(p.msg->body.empty());  // Content-Length: 0
    CHECK(parse(request(kVia, "\r\r\r")).status == ParseStatus::Ok);
}

TEST_CASE("parse_message: a bare LF ends a line, so it never carries a header inside a value") {
    // RFC 3261 §7 wants CRLF; a lone LF is taken as a line end (as before), so the line after it
    // is a header of its own and the value before it ends there: nothing to smuggle.
    const auto p = parse(request(core_headers("", "Require: foo\nX-Injected: registrar\r\n")));
    REQUIRE(p.status == ParseStatus::Ok);
    CHECK(p.msg->find(HeaderId::Require)->value == "foo");
    CHECK(value_of(*p.msg, "X-Injected") == "registrar");
    // Mixed line ends, a CR right before each LF: still Ok.
    CHECK(parse("OPTIONS sip:example.com SIP/2.0\nCall-ID: a\r\nSubject: b\n\r\n").status ==
          ParseStatus::Ok);
}

TEST_CASE("parse_message: a bare CR cut at every offset is never Ok once it is in") {
    for (std::string_view extra : {"Require: foo\rX-Injected: registrar\r\n"sv,
                                   "From: \"A\rX-Injected: r\" <sip:a@example.com>;tag=1\r\n"sv}) {
        const std::string whole = request(core_headers("", extra));
        // The offset of the bare CR: the first CR not followed by LF.
        std::size_t bare = 0;
        while (!(whole[bare] == '\r' && whole[bare + 1] != '\n')) ++bare;
        const bool answerable = extra.starts_with("Require");
        // (A From line in the extra headers makes two From headers: a fault for
        // parse_request_core, not for framing, so only the parse status is checked.)
        std::size_t ok_after = 0, wrong_whole = 0;
        for (std::size_t len = 0; len <= whole.size(); ++len) {
            const auto p = parse(whole.substr(0, len));
            if (len > bare &&
                (p.status == ParseStatus::Ok || p.status == ParseStatus::BadContentLength ||
                 p.status == ParseStatus::TooManyHeaders))
                ++ok_after;
            if (len == whole.size() &&
                p.status != (answerable ? ParseStatus::BareCr : ParseStatus::Malformed))
                ++wrong_whole;
        }
        CAPTURE(extra);
        CHECK(ok_after == 0);
        CHECK(wrong_whole == 0);
    }
}

TEST_CASE("parse_message: every list header is split on commas") {
    struct Case {
        std::string_view name;
        HeaderId id;
        std::string_view value;
        std::vector<std::string_view> elements;
    };
    const std::vector<Case> cases = {
        {"Via",
         HeaderId::Via,
         "SIP/2.0/UDP a.example.com;branch=z9hG4bK1 , SIP/2.0/UDP b;branch=z9hG4bK2",
         {"SIP/2.0/UDP a.example.com;branch=z9hG4bK1", "SIP/2.0/UDP b;branch=z9hG4bK2"}},
        {"v",
         HeaderId::Via,
         "SIP/2.0/UDP a;branch=z9hG4bK1,SIP/2.0/UDP b;branch=z9hG4bK2",
         {"SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b;branch=z9hG4bK2"}},
        {"Contact",
         HeaderId::Contact,
         "<sip:a@x>;q=0.5, <sip:b@y>",
         {"<sip:a@x>;q=0.5", "<sip:b@y>"}},
        {"m", HeaderId::Contact, "sip:a@x;expires=5,sip:b@y", {"sip:a@x;expires=5", "sip:b@y"}},
        {"Route",
         HeaderId::Route,
         "<sip:p1;lr>, <sip:p2;lr>, <sip:p3;lr>",
         {"<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"}},
        {"Record-Route",
         HeaderId::RecordRoute,
         "<sip:p1;lr>,<sip:p2;lr>",
         {"<sip:p1;lr>", "<sip:p2;lr>"}},
        {"Path", HeaderId::Path, "<sip:e1;lr>, <sip:e2;lr>", {"<sip:e1;lr>", "<sip:e2;lr>"}},
        {"Require", HeaderId::Require, "100rel, timer", {"100rel", "timer"}},
        {"Proxy-Require", HeaderId::ProxyRequire, "foo,bar", {"foo", "bar"}},
        {"Supported", HeaderId::Supported, "path , outbound ,gruu", {"path", "outbound", "gruu"}},
        {"k", HeaderId::Supported, "timer, 100rel", {"timer", "100rel"}},
        {"Unsupported", HeaderId::Unsupported, "x-a, x-b", {"x-a", "x-b"}},
        {"Allow", HeaderId::Allow, "INVITE ,ACK , BYE,CANCEL", {"INVITE", "ACK", "BYE", "CANCEL"}},
    };
    for (const Case& c : cases) {
        INFO("header ", c.name, ": ", c.value);
        std::string line(c.name);
        line += ": ";
        line += c.value;
        line += "\r\n";
        const auto p = parse(request(line));
        REQUIRE(p.status == ParseStatus::Ok);
        CHECK(p.msg->header_count == c.elements.size());
        check_values(*p.msg, c.id, c.elements);
        // Each element carries the header's name as written.
        for (std::size_t i = 0; i < p.msg->header_count; ++i) {
            CHECK(p.msg->headers[i].name == c.name);
            CHECK(p.msg->headers[i].id == c.id);
        }
    }
}

TEST_CASE("parse_message: list splitting ignores commas inside quotes and angle brackets") {
    const auto p =
        parse(request("Contact: \"Smith, John\" <sip:john@192.0.2.5>;q=0.5, <sip:a,b@192.0.2.6>, "
                      "\"x \\\"y, z\\\" <w>\" <sip:q@192.0.2.7>\r\n"
                      "Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>\r\n"));
    REQUIRE(p.status == ParseStatus::Ok);
    check_values(*p.msg, HeaderId::Contact,
                 {"\"Smith, John\" <sip:john@192.0.2.5>;q=0.5", "<sip:a,b@192.0.2.6>",
                  "\"x \\\"y, z\\\" <w>\" <sip:q@192.0.2.7>"});
    // A list folded after its comma: each element trimmed of the fold.
    check_values(*p.msg, HeaderId::Route, {"<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"});
    CHECK(p.msg->header_count == 5);
}

TEST_CASE("parse_message: a list header on several lines keeps every element in order") {
    const auto p =
        parse(request("Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n"
                      "Max-Forwards: 70\r\n"
                      "Via: SIP/2.0/UDP c;branch=z9hG4bK3\r\n"));
    REQUIRE(p.status == ParseStatus::Ok);
    check_values(*p.msg, HeaderId::Via,
                 {"SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b;branch=z9hG4bK2",
                  "SIP/2.0/UDP c;branch=z9hG4bK3"});
    CHECK(p.msg->headers[2].id == HeaderId::MaxForwards);
    CHECK(p.msg->count(HeaderId::Via) == 3);
}

TEST_CASE("parse_message: non-list headers are never split") {
    const auto p = parse(
        request("Subject: lunch, then coffee, then work\r\n"
                "Authorization: Digest username=\"bob\", realm=\"example.com\", nonce=\"n1\", "
                "uri=\"sip:example.com\", response=\"0123\"\r\n"
                "From: \"Doe, Jane\" <sip:jane@example.com>;tag=9\r\n"
                "Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
                "Allow-Events: presence, dialog\r\n"
                "X-Unknown: a, b, c\r\n"));
    REQUIRE(p.status == ParseStatus::Ok);
    const Message& m = *p.msg;
    CHECK(m.header_count == 6);
    CHECK(value_of(m, "Subject") == "lunch, then coffee, then work");
    CHECK(value_of(m, "Authorization") ==
          "Digest username=\"bob\", realm=\"example.com\", nonce=\"n1\", "
          "uri=\"sip:example.com\", response=\"0123\"");
    CHECK(value_of(m, "From") == "\"Doe, Jane\" <sip:jane@example.com>;tag=9");
    CHECK(value_of(m, "Date") == "Mon, 01 Jan 2024 00:00:00 GMT");
    CHECK(value_of(m, "Allow-Events") == "presence, dialog");
    CHECK(value_of(m, "X-Unknown") == "a, b, c");
    CHECK(m.count(HeaderId::Subject) == 1);
    CHECK(m.count(HeaderId::Authorization) == 1);
}

TEST_CASE("parse_message: max_size") {
    const std::string msg = request(std::string(kVia) + "Content-Length: 5\r\n", "hello");
    ParseLimits limits;
    limits.max_size = msg.size();
    CHECK(parse(msg, limits).status == ParseStatus::Ok);
    limits.max_size = msg.size() - 1;
    const auto p = parse(msg, limits);
    CHECK(p.status == ParseStatus::TooLarge);
    CHECK(p.msg->header_count == 0);

    // The default is 65535 bytes.
    std::string big = request(std::string(kVia) + "X-Pad: " + std::string(65535, 'p') + "\r\n");
    CHECK(parse(big).status == ParseStatus::TooLarge);
    std::string fits = std::string(kStart) + std::string(kVia) + "X-Pad: ";
    const std::size_t pad = 65535 - fits.size() - 4;
    fits += std::string(pad, 'p');
    fits += "\r\n\r\n";
    REQUIRE(fits.size() == 65535);
    const auto q = parse(fits);
    CHECK(q.status == ParseStatus::Ok);
    CHECK(value_of(*q.msg, "X-Pad").size() == pad);
}

TEST_CASE("parse_message: max_headers counts entries after list splitting") {
    // Via + 3 Allow elements + Call-ID = 5 entries.
    const std::string msg =
        request(std::string(kVia) + "Allow: INVITE, ACK, BYE\r\nCall-ID: c@x\r\n");
    ParseLimits limits;
    limits.max_headers = 5;
    const auto ok = parse(msg, limits);
    CHECK(ok.status == ParseStatus::Ok);
    CHECK(ok.msg->header_count == 5);
    limits.max_headers = 4;
    const auto over = parse(msg, limits);
    CHECK(over.status == ParseStatus::TooManyHeaders);
    // The start line is still valid.
    CHECK(over.msg->is_request);
    CHECK(over.msg->method == Method::Invite);
    CHECK(over.msg->request_uri == "sip:bob@example.com");
    limits.max_headers = 2;
    CHECK(parse(msg, limits).status == ParseStatus::TooManyHeaders);
}

TEST_CASE("parse_message: TooManyHeaders only when the headers kept are clean") {
    ParseLimits limits;
    limits.max_headers = 1;
    // A NUL in the one header that would be kept: it cannot be reported as valid.
    std::string bytes =
        request(std::string("Subject: a") + '\0' + "b\r\nCall-ID: x\r\nTo: <sip:b@x>\r\n");
    CHECK(parse(bytes, limits).status == ParseStatus::Malformed);
    // Without the NUL: TooManyHeaders, and the one kept header is the first.
    const auto p = parse(request("Subject: ab\r\nCall-ID: x\r\nTo: <sip:b@x>\r\n"), limits);
    CHECK(p.status == ParseStatus::TooManyHeaders);
    CHECK(p.msg->header_count <= 1);
    if (p.msg->header_count == 1) CHECK(p.msg->headers[0].value == "ab");
}

TEST_CASE("parse_message: max_headers is clamped to the capacity") {
    auto many = [](std::size_t n) {
        std::string h;
        for (std::size_t i = 0; i < n; ++i)
            h += "X-H" + std::to_string(i) + ": " + std::to_string(i) + "\r\n";
        return request(h);
    };
    ParseLimits limits;
    limits.max_headers = 100000;
    const auto full = parse(many(kHeaderCapacity), limits);
    CHECK(full.status == ParseStatus::Ok);
    CHECK(full.msg->header_count == kHeaderCapacity);
    CHECK(full.msg->headers[kHeaderCapacity - 1].value == std::to_string(kHeaderCapacity - 1));
    CHECK(parse(many(kHeaderCapacity + 1), limits).status == ParseStatus::TooManyHeaders);
    // The default cap is 96.
    CHECK(parse(many(96)).status == ParseStatus::Ok);
    CHECK(parse(many(97)).status == ParseStatus::TooManyHeaders);
    // A list header whose elements push the count over the cap.
    std::string allow = "Allow: A";
    for (int i = 0; i < 200; ++i) allow += ", M" + std::to_string(i);
    CHECK(parse(request(allow + "\r\n"), limits).status == ParseStatus::TooManyHeaders);
}

TEST_CASE("parse_message: Content-Length frames the body") {
    SUBCASE("shorter than the remaining bytes: the body is exactly Content-Length bytes") {
        const auto p = parse(request("Content-Length: 4\r\n", "bodyEXTRA"));
        REQUIRE(p.status == ParseStatus::Ok);
        CHECK(p.msg->body == "body");
        CHECK(p.msg->content_length == 4);
        CHECK(p.msg->has_content_length);
        CHECK(p.msg->body.data() == p.bytes.data() + p.bytes.size() - 9);
    }
    SUBCASE("zero with bytes after the head: empty body") {
        const auto p = parse(request("Content-Length: 0\r\n", "ignored"));
        REQUIRE(p.status == ParseStatus::Ok);
        CHECK(p.msg->body.empty());
        CHECK(p.msg->has_content_length);
    }
    SUBCASE("exact") {
        const auto p = parse(request("l: 7\r\n", "exactly"));
        REQUIRE(p.status == ParseStatus::Ok);
        CHECK(p.msg->body == "exactly");
        CHECK(p.msg->content_length == 7);
    }
    SUBCASE("absent: the body is the rest of the datagram") {
        const auto p = parse(request("Content-Type: text/plain\r\n", "all of\r\nthis"));
        REQUIRE(p.status == ParseStatus::Ok);
        CHECK(p.msg->body == "all of\r\nthis");
        CHECK_FALSE(p.msg->has_content_length);
        CHECK(p.msg->content_length == 0);
    }
    SUBCASE("absent, nothing after the head: empty body") {
        const auto p = parse(request("Call-ID: a@b\r\n"));
        REQUIRE(p.status == ParseStatus::Ok);
        CHECK(p.msg->body.empty());
        CHECK_FALSE(p.msg->has_content_length);
    }
    SUBCASE("duplicated with the same value: fine, long and compact alike") {
        const auto p = parse(request("Content-Length: 3\r\nl: 3\r\nContent-Length:3\r\n", "abc"));
        REQUIRE(p.status == ParseStatus::Ok);
        CHECK(p.msg->body == "abc");
        CHECK(p.msg->count(HeaderId::ContentLength) == 3);
    }
    SUBCASE("duplicated with another value") {
        const auto p = parse(request("Content-Length: 3\r\nContent-Length: 4\r\n", "abcd"));
        CHECK(p.status == ParseStatus::BadContentLength);
        // Every header is valid: a 400 can be formed.
        CHECK(p.msg->header_count == 2);
        CHECK(p.msg->method == Method::Invite);
    }
    SUBCASE("beyond the datagram") {
        const auto p = parse(request(std::string(kVia) + "Content-Length: 5\r\n", "abcd"));
        CHECK(p.status == ParseStatus::BadContentLength);
        CHECK(p.msg->header_count == 2);
        CHECK(p.msg->find(HeaderId::Via) != nullptr);
    }
    SUBCASE("unparsable") {
        for (std::string_view v : {"abc"sv, "-1"sv, "1.5"sv, "0x10"sv, "99999999999"sv, "5 5"sv}) {
            INFO("Content-Length: ", v);
            const auto p = parse(request("Content-Length: " + std::string(v) + "\r\n", "hello"));
            CHECK(p.status == ParseStatus::BadContentLength);
        }
    }
}

TEST_CASE("parse_message: start lines") {
    SUBCASE("requests keep the method text; the method is case-sensitive") {
        const auto p = parse("invite sip:bob@example.com SIP/2.0\r\nCall-ID: x\r\n\r\n");
        REQUIRE(p.status == ParseStatus::Ok);
        CHECK(p.msg->is_request);
        CHECK(p.msg->method == Method::Unknown);
        CHECK(p.msg->method_name == "invite");
        const auto q = parse("NEWMETHOD sip:bob@example.com SIP/2.0\r\n\r\n");
        REQUIRE(q.status == ParseStatus::Ok);
        CHECK(q.msg->method == Method::Unknown);
        CHECK(q.msg->method_name == "NEWMETHOD");
        CHECK(q.msg->request_uri == "sip:bob@example.com");
        CHECK(q.msg->header_count == 0);
    }
    SUBCASE("responses") {
        const auto p = parse("SIP/2.0 486 Busy Here\r\nCall-ID: x\r\n\r\n");
        REQUIRE(p.status == ParseStatus::Ok);
        CHECK_FALSE(p.msg->is_request);
        CHECK(p.msg->status_code == 486);
        CHECK(p.msg->reason == "Busy Here");
        CHECK(p.msg->version == "SIP/2.0");
        CHECK(p.msg->header_count == 1);
    }
    SUBCASE("broken framing is Malformed") {
        for (std::string_view bad : {
                 ""sv,
                 "\r\n"sv,
                 "\r\n\r\n"sv,
                 "INVITE\r\n\r\n"sv,
                 "INVITE sip:bob@example.com\r\n\r\n"sv,
                 "INVITE sip:bob@example.com SIP/2.0\r\n"sv,                // no empty line
                 "INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: x\r\n"sv,  // no empty line
                 "INVITE sip:bob@example.com SIP/2.0\r\nno colon here\r\n\r\n"sv,
                 "INVITE sip:bob@example.com SIP/2.0\r\nSubject: a\0b\r\n\r\n"sv,
                 "INVITE sip:bob@example.com SIP/2.0\r\nBad Header: x\r\n\r\n"sv,  // not a token
                 "INVITE sip:bob@example.com SIP/2.0\r\n: no name\r\n\r\n"sv,
                 "INVITE sip:bob@example.com SIP/2.0\r\n folded: x\r\n\r\n"sv,  // fold, no header
                 "INVITE  sip:bob@example.com SIP/2.0\r\n\r\n"sv,               // §7.1: single SP
                 "INVITE sip:bob@example.com SIP/2.0 \r\n\r\n"sv,
                 "INVITE sip:bob@example.com SIP/2.0\r\n\r"sv,  // CR without its LF
                 "SIP/2.0 20 OK\r\n\r\n"sv,
                 "SIP/2.0 abc OK\r\n\r\n"sv,
             }) {
            INFO("bytes: ", std::string(bad));
            CHECK(parse(std::string(bad)).status == ParseStatus::Malformed);
        }
    }
}

TEST_CASE("parse_message: a reused Message carries nothing over") {
    auto m = std::make_unique<Message>();
    const std::string first =
        request(std::string(kVia) + "Allow: A, B, C\r\nContent-Length: 2\r\n", "hi");
    REQUIRE(parse_message(first, *m) == ParseStatus::Ok);
    CHECK(m->header_count == 5);
    CHECK(m->has_content_length);
    const std::string second = "SIP/2.0 200 OK\r\nCall-ID: z\r\n\r\nrest";
    REQUIRE(parse_message(second, *m) == ParseStatus::Ok);
    CHECK(m->header_count == 1);
    CHECK_FALSE(m->is_request);
    CHECK_FALSE(m->has_content_length);
    CHECK(m->body == "rest");
    CHECK(m->find(HeaderId::Allow) == nullptr);
    CHECK(m->count(HeaderId::Via) == 0);
}

TEST_CASE("parse_status_text: short, fixed and distinct") {
    CHECK(parse_status_text(ParseStatus::Ok) == "ok");
    CHECK(parse_status_text(ParseStatus::Malformed) == "malformed");
    const std::set<std::string_view> texts = {parse_status_text(ParseStatus::Ok),
                                              parse_status_text(ParseStatus::Malformed),
                                              parse_status_text(ParseStatus::TooLarge),
                                              parse_status_text(ParseStatus::TooManyHeaders),
                                              parse_status_text(ParseStatus::BadContentLength),
                                              parse_status_text(ParseStatus::BareCr)};
    CHECK(texts.size() == 6);
    for (std::string_view t : texts) {
        CHECK_FALSE(t.empty());
        CHECK(t.size() < 32);
    }
}

TEST_CASE("method_from_text and method_text round-trip every known method") {
    const std::array<std::pair<std::string_view, Method>, 14> known{{
        {"INVITE", Method::Invite},
        {"ACK", Method::Ack},
        {"OPTIONS", Method::Options},
        {"BYE", Method::Bye},
        {"CANCEL", Method::Cancel},
        {"REGISTER", Method::Register},
        {"PRACK", Method::Prack},
        {"SUBSCRIBE", Method::Subscribe},
        {"NOTIFY", Method::Notify},
        {"PUBLISH", Method::Publish},
        {"INFO", Method::Info},
        {"REFER", Method::Refer},
        {"MESSAGE", Method::Message},
        {"UPDATE", Method::Update},
    }};
    for (const auto& entry : known) {
        const auto text = entry.first;
        const auto m = entry.second;
        INFO("method ", text);
        CHECK(method_from_text(text) == m);
        CHECK(method_text(m) == text);
        CHECK(method_from_text(lower(text)) == Method::Unknown);
    }
    for (std::string_view other :
         {""sv, "INVITEX"sv, "INVIT"sv, "Invite"sv, "NEWMETHOD"sv, " INVITE"sv}) {
        INFO("token '", other, "'");
        CHECK(method_from_text(other) == Method::Unknown);
    }
    CHECK(method_text(Method::Unknown) == "");
}

}  // namespace sipr::sip
