// write_response / ResponseWriter (RFC 3261 §8.2.6, §18.2.1, RFC 3581) and the To-tag of DESIGN §4.
#include "sipr/sip/response.h"

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace sipr::sip;
using sipr::base::derive_sip_key;
using sipr::base::SipKey;

const SipKey kKey = derive_sip_key("shared secret of every instance");

constexpr std::string_view kVia1 = "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds";
constexpr std::string_view kVia2 =
    "SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2";
constexpr std::string_view kFrom = "\"Alice\"   <sip:alice@atlanta.com>;tag=1928301774";
constexpr std::string_view kTo = "Bob <sip:bob@biloxi.com>";
constexpr std::string_view kCallId = "a84b4c76e66710@pc33.atlanta.com";
constexpr std::string_view kCSeq = "314159   INVITE";

struct ReqParts {
    std::string start = "INVITE sip:bob@biloxi.com SIP/2.0";
    std::string vias = "Via: " + std::string(kVia1) + "\r\nVia: " + std::string(kVia2) + "\r\n";
    std::string from = std::string(kFrom);
    std::string to = std::string(kTo);
    std::string call_id = std::string(kCallId);
    std::string cseq = std::string(kCSeq);

    std::string text() const {
        return start + "\r\n" + vias +
               "Max-Forwards: 70\r\n"
               "To: " +
               to +
               "\r\n"
               "From: " +
               from +
               "\r\n"
               "Call-ID: " +
               call_id +
               "\r\n"
               "CSeq: " +
               cseq +
               "\r\n"
               "Contact: <sip:alice@pc33.atlanta.com>\r\n"
               "Subject: lunch\r\n"
               "Content-Type: application/sdp\r\n"
               "Content-Length: 5\r\n"
               "\r\n"
               "v=0\r\n";
    }
};

struct Req {
    std::string text;
    Message msg;
    RequestCore core;
    Fault fault = Fault::None;
    ParseStatus parse = ParseStatus::Malformed;
};

std::unique_ptr<Req> make_req(const ReqParts& p) {
    auto r = std::make_unique<Req>();
    r->text = p.text();
    r->parse = parse_message(r->text, r->msg);
    r->fault = parse_request_core(r->msg, r->parse, r->core);
    return r;
}

struct Resp {
    std::vector<char> buf = std::vector<char>(4096);
    std::string_view text;
    Message msg;
    ParseStatus parse = ParseStatus::Malformed;
};

std::unique_ptr<Resp> respond(const Req& req, uint16_t status = 302,
                              std::string_view reason = "Moved Temporarily",
                              std::string_view extra = {}, const SipKey& key = kKey,
                              const Source& source = {}) {
    auto r = std::make_unique<Resp>();
    r->text = write_response(req.msg, req.core, status, reason, extra, key, r->buf, source);
    r->parse = parse_message(r->text, r->msg);
    return r;
}

std::vector<std::string_view> values_of(const Message& m, HeaderId id) {
    std::vector<std::string_view> out;
    for (std::size_t i = 0; i < m.header_count; ++i)
        if (m.headers[i].id == id) out.push_back(m.headers[i].value);
    return out;
}

int count_params(std::string_view params, std::string_view wanted) {
    ParamIterator it(params);
    std::string_view name, value;
    bool has_value = false;
    int n = 0;
    while (it.next(name, value, has_value))
        if (name == wanted) ++n;
    return n;
}

bool is_lower_hex(std::string_view s) {
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

std::string to_tag_of(const Resp& r) {
    const Header* to = r.msg.find(HeaderId::To);
    if (to == nullptr) return "<no To>";
    FromTo ft;
    if (!parse_from_to(to->value, ft)) return "<bad To>";
    return std::string(ft.tag);
}

std::string to_tag_of(const ReqParts& p, const SipKey& key = kKey) {
    auto req = make_req(p);
    if (req->fault != Fault::None) return "<bad request>";
    return to_tag_of(*respond(*req, 302, "Moved Temporarily", {}, key));
}

}  // namespace

TEST_CASE("write_response: status line, copied headers, tagged To, empty body") {
    auto req = make_req(ReqParts{});
    REQUIRE(req->parse == ParseStatus::Ok);
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req);
    REQUIRE_FALSE(resp->text.empty());

    CHECK(resp->text.substr(0, 31) == "SIP/2.0 302 Moved Temporarily\r\n");
    CHECK(resp->text.size() >= 23u);
    CHECK(resp->text.substr(resp->text.size() - 23) == "\r\nContent-Length: 0\r\n\r\n");
    // Exactly one blank line, at the very end: nothing of the request body follows.
    CHECK(resp->text.find("\r\n\r\n") == resp->text.size() - 4);
    CHECK(resp->text.find("v=0") == std::string_view::npos);

    REQUIRE(resp->parse == ParseStatus::Ok);
    const Message& m = resp->msg;
    CHECK_FALSE(m.is_request);
    CHECK(m.version == "SIP/2.0");
    CHECK(m.status_code == 302);
    CHECK(m.reason == "Moved Temporarily");
    CHECK(m.has_content_length);
    CHECK(m.content_length == 0u);
    CHECK(m.body.empty());

    const auto vias = values_of(m, HeaderId::Via);
    REQUIRE(vias.size() == 2u);
    CHECK(vias[0] == kVia1);  // no Source: the Via is left as it was
    CHECK(vias[1] == kVia2);

    REQUIRE(m.find(HeaderId::From) != nullptr);
    CHECK(m.find(HeaderId::From)->value == kFrom);
    REQUIRE(m.find(HeaderId::CallId) != nullptr);
    CHECK(m.find(HeaderId::CallId)->value == kCallId);
    REQUIRE(m.find(HeaderId::CSeq) != nullptr);
    CHECK(m.find(HeaderId::CSeq)->value == kCSeq);
    CHECK(m.count(HeaderId::From) == 1u);
    CHECK(m.count(HeaderId::To) == 1u);
    CHECK(m.count(HeaderId::CallId) == 1u);
    CHECK(m.count(HeaderId::CSeq) == 1u);
    CHECK(m.count(HeaderId::ContentLength) == 1u);

    // Byte-exact copies in the raw text too.
    CHECK(resp->text.find(kFrom) != std::string_view::npos);
    CHECK(resp->text.find(kCSeq) != std::string_view::npos);

    // Nothing else of the request is copied.
    CHECK(m.find(HeaderId::MaxForwards) == nullptr);
    CHECK(m.find(HeaderId::Contact) == nullptr);
    CHECK(m.find(HeaderId::Subject) == nullptr);
    CHECK(m.find(HeaderId::ContentType) == nullptr);
}

TEST_CASE("write_response: untagged To gets ;tag= and 16 lower-case hex digits") {
    auto req = make_req(ReqParts{});
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req);
    REQUIRE(resp->parse == ParseStatus::Ok);
    const Header* to = resp->msg.find(HeaderId::To);
    REQUIRE(to != nullptr);
    FromTo ft;
    REQUIRE(parse_from_to(to->value, ft));
    CHECK(ft.tag.size() == kToTagLength);
    CHECK(ft.tag.size() == 16u);
    CHECK(is_lower_hex(ft.tag));
    CHECK(to->value == std::string(kTo) + ";tag=" + std::string(ft.tag));
    CHECK(ft.addr.uri_text == "sip:bob@biloxi.com");
    CHECK(ft.addr.display_name == "Bob");

    std::array<char, kToTagLength> tag{};
    make_to_tag(kKey, req->core, tag);
    CHECK(std::string_view(tag.data(), tag.size()) == ft.tag);
}

TEST_CASE("write_response: a tagged To is left alone") {
    ReqParts p;
    p.to = "Bob <sip:bob@biloxi.com>;tag=a6c85cf";
    auto req = make_req(p);
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req, 200, "OK");
    REQUIRE(resp->parse == ParseStatus::Ok);
    REQUIRE(resp->msg.find(HeaderId::To) != nullptr);
    CHECK(resp->msg.find(HeaderId::To)->value == "Bob <sip:bob@biloxi.com>;tag=a6c85cf");
    CHECK(resp->text.find(";tag=a6c85cf;tag=") == std::string_view::npos);
    CHECK(resp->text.substr(0, 14) == "SIP/2.0 200 OK");
}

TEST_CASE("To-tag: deterministic, and keyed on Call-ID, From tag and top Via branch") {
    const std::string base = to_tag_of(ReqParts{});
    REQUIRE(base.size() == kToTagLength);

    // Same request, parsed again into other memory, on "another instance" with the same secret.
    CHECK(to_tag_of(ReqParts{}) == base);
    CHECK(to_tag_of(ReqParts{}, derive_sip_key("shared secret of every instance")) == base);

    // The same transaction's CANCEL (same branch, Call-ID, From tag) gets the same tag (§9.2).
    ReqParts cancel;
    cancel.start = "CANCEL sip:bob@biloxi.com SIP/2.0";
    cancel.cseq = "314159 CANCEL";
    CHECK(to_tag_of(cancel) == base);

    ReqParts branch;
    branch.vias =
        "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhdt\r\nVia: " + std::string(kVia2) +
        "\r\n";
    CHECK(to_tag_of(branch) != base);

    ReqParts call_id;
    call_id.call_id = "a84b4c76e66711@pc33.atlanta.com";
    CHECK(to_tag_of(call_id) != base);

    ReqParts from_tag;
    from_tag.from = "\"Alice\"   <sip:alice@atlanta.com>;tag=1928301775";
    CHECK(to_tag_of(from_tag) != base);

    CHECK(to_tag_of(ReqParts{}, derive_sip_key("another secret")) != base);
    CHECK(to_tag_of(ReqParts{}, SipKey{1, 2}) != to_tag_of(ReqParts{}, SipKey{1, 3}));
}

TEST_CASE("make_to_tag: lower-case hex, deterministic") {
    auto req = make_req(ReqParts{});
    REQUIRE(req->fault == Fault::None);
    std::array<char, kToTagLength> a{}, b{};
    make_to_tag(kKey, req->core, a);
    make_to_tag(kKey, req->core, b);
    CHECK(a == b);
    CHECK(is_lower_hex(std::string_view(a.data(), a.size())));
    make_to_tag(SipKey{0, 0}, req->core, b);
    CHECK(a != b);
}

TEST_CASE("write_response: every Via in order, two values on one line") {
    ReqParts p;
    p.vias =
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa, SIP/2.0/UDP "
        "b.example.com:5070;branch=z9hG4bKb\r\n"
        "Via: SIP/2.0/TCP c.example.com;branch=z9hG4bKc\r\n";
    auto req = make_req(p);
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req);
    REQUIRE(resp->parse == ParseStatus::Ok);
    const auto vias = values_of(resp->msg, HeaderId::Via);
    REQUIRE(vias.size() == 3u);
    CHECK(vias[0] == "SIP/2.0/UDP a.example.com;branch=z9hG4bKa");
    CHECK(vias[1] == "SIP/2.0/UDP b.example.com:5070;branch=z9hG4bKb");
    CHECK(vias[2] == "SIP/2.0/TCP c.example.com;branch=z9hG4bKc");
}

TEST_CASE("write_response: received= on the top Via when sent-by differs from the source") {
    auto req = make_req(ReqParts{});
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req, 302, "Moved Temporarily", {}, kKey, Source{"192.0.2.101", 5060});
    REQUIRE(resp->parse == ParseStatus::Ok);
    const auto vias = values_of(resp->msg, HeaderId::Via);
    REQUIRE(vias.size() == 2u);
    Via top;
    REQUIRE(parse_via(vias[0], top));
    CHECK(top.host == "pc33.atlanta.com");
    CHECK(top.branch == "z9hG4bK776asdhds");
    CHECK(top.received == "192.0.2.101");
    CHECK(count_params(top.params, "received") == 1);
    CHECK_FALSE(top.has_rport);  // no rport asked for, none added
    CHECK(vias[1] == kVia2);     // lower Vias untouched
}

TEST_CASE("write_response: no received= when sent-by is the source address") {
    ReqParts p;
    p.vias = "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bKsame\r\n";
    auto req = make_req(p);
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req, 302, "Moved Temporarily", {}, kKey, Source{"192.0.2.101", 5060});
    REQUIRE(resp->parse == ParseStatus::Ok);
    const auto vias = values_of(resp->msg, HeaderId::Via);
    REQUIRE(vias.size() == 1u);
    CHECK(vias[0] == "SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bKsame");
}

TEST_CASE("write_response: a valueless rport is filled with the source port (RFC 3581 §4)") {
    ReqParts p;
    p.vias = "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKnat\r\n";
    auto req = make_req(p);
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req, 302, "Moved Temporarily", {}, kKey, Source{"192.0.2.50", 61000});
    REQUIRE(resp->parse == ParseStatus::Ok);
    const auto vias = values_of(resp->msg, HeaderId::Via);
    REQUIRE(vias.size() == 1u);
    Via top;
    REQUIRE(parse_via(vias[0], top));
    CHECK(top.has_rport);
    CHECK(top.rport == "61000");
    CHECK(top.received == "192.0.2.50");
    CHECK(top.branch == "z9hG4bKnat");
    CHECK(top.host == "10.0.0.1");
    CHECK(top.port == 5060);
    CHECK(count_params(top.params, "rport") == 1);
    CHECK(count_params(top.params, "received") == 1);
}

TEST_CASE(
    "write_response: rport makes received= mandatory even when equal to sent-by (RFC 3581 §4)") {
    ReqParts p;
    p.vias = "Via: SIP/2.0/UDP 192.0.2.50:5060;rport;branch=z9hG4bKeq\r\n";
    auto req = make_req(p);
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req, 302, "Moved Temporarily", {}, kKey, Source{"192.0.2.50", 5060});
    REQUIRE(resp->parse == ParseStatus::Ok);
    Via top;
    REQUIRE(parse_via(values_of(resp->msg, HeaderId::Via).at(0), top));
    CHECK(top.rport == "5060");
    CHECK(count_params(top.params, "rport") == 1);
    CHECK(top.received == "192.0.2.50");
}

TEST_CASE("write_response: a received= sent by the client is replaced, not duplicated") {
    ReqParts p;
    p.vias = "Via: SIP/2.0/UDP 10.0.0.1;received=10.9.9.9;rport;branch=z9hG4bKrr\r\n";
    auto req = make_req(p);
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req, 302, "Moved Temporarily", {}, kKey, Source{"192.0.2.50", 1234});
    REQUIRE(resp->parse == ParseStatus::Ok);
    Via top;
    REQUIRE(parse_via(values_of(resp->msg, HeaderId::Via).at(0), top));
    CHECK(top.received == "192.0.2.50");
    CHECK(count_params(top.params, "received") == 1);
    CHECK(top.rport == "1234");
    CHECK(top.branch == "z9hG4bKrr");
}

TEST_CASE("write_response: an IPv6 source goes into received= without brackets") {
    auto req = make_req(ReqParts{});
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req, 302, "Moved Temporarily", {}, kKey, Source{"2001:db8::5", 5060});
    REQUIRE(resp->parse == ParseStatus::Ok);
    Via top;
    REQUIRE(parse_via(values_of(resp->msg, HeaderId::Via).at(0), top));
    CHECK(top.received == "2001:db8::5");
}

TEST_CASE("write_response: an empty source leaves a valueless rport alone") {
    ReqParts p;
    p.vias = "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKnat\r\n";
    auto req = make_req(p);
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req);
    REQUIRE(resp->parse == ParseStatus::Ok);
    CHECK(values_of(resp->msg, HeaderId::Via).at(0) ==
          "SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKnat");
}

TEST_CASE("write_response: extra headers go before Content-Length") {
    auto req = make_req(ReqParts{});
    REQUIRE(req->fault == Fault::None);
    const std::string_view extra =
        "Contact: <sip:bob@192.0.2.4>;q=0.7;expires=3600\r\n"
        "Retry-After: 5\r\n";
    auto resp = respond(*req, 302, "Moved Temporarily", extra);
    REQUIRE_FALSE(resp->text.empty());
    const std::string tail = std::string(extra) + "Content-Length: 0\r\n\r\n";
    REQUIRE(resp->text.size() > tail.size());
    CHECK(resp->text.substr(resp->text.size() - tail.size()) == tail);
    CHECK(resp->text.find("CSeq: ") < resp->text.find("Contact: "));
    CHECK(resp->text.find("Call-ID: ") < resp->text.find("Contact: "));
    REQUIRE(resp->parse == ParseStatus::Ok);
    REQUIRE(resp->msg.find(HeaderId::Contact) != nullptr);
    CHECK(resp->msg.find(HeaderId::Contact)->value == "<sip:bob@192.0.2.4>;q=0.7;expires=3600");
    REQUIRE(resp->msg.find(HeaderId::RetryAfter) != nullptr);
    CHECK(resp->msg.find(HeaderId::RetryAfter)->value == "5");
}

TEST_CASE("write_response: custom reason phrase") {
    auto req = make_req(ReqParts{});
    REQUIRE(req->fault == Fault::None);
    auto resp = respond(*req, 400, "Missing From Header");
    CHECK(resp->text.substr(0, 33) == "SIP/2.0 400 Missing From Header\r\n");
    REQUIRE(resp->parse == ParseStatus::Ok);
    CHECK(resp->msg.status_code == 400);
    CHECK(resp->msg.reason == "Missing From Header");
}

TEST_CASE("ResponseWriter: begin + add_header + raw + finish") {
    auto req = make_req(ReqParts{});
    REQUIRE(req->fault == Fault::None);
    std::vector<char> buf(4096);
    ResponseWriter w(buf);
    w.begin(req->msg, req->core, 503, "Service Unavailable", kKey);
    w.add_header("Retry-After", "5");
    w.raw("Warning: 399 example.com \"redis down\"\r\n");
    const std::string_view out = w.finish();
    CHECK_FALSE(w.overflow());
    REQUIRE_FALSE(out.empty());
    CHECK(out.data() == buf.data());
    CHECK(out.substr(0, 33) == "SIP/2.0 503 Service Unavailable\r\n");
    const std::string_view tail =
        "Retry-After: 5\r\nWarning: 399 example.com \"redis down\"\r\nContent-Length: 0\r\n\r\n";
    REQUIRE(out.size() > tail.size());
    CHECK(out.substr(out.size() - tail.size()) == tail);

    // Same as the one-shot form.
    std::vector<char> buf2(4096);
    const std::string_view one_shot =
        write_response(req->msg, req->core, 503, "Service Unavailable",
                       "Retry-After: 5\r\nWarning: 399 example.com \"redis down\"\r\n", kKey, buf2);
    CHECK(one_shot == out);
}

TEST_CASE("write_response: too small at every size, never past the buffer") {
    auto req = make_req(ReqParts{});
    REQUIRE(req->fault == Fault::None);
    const std::string_view extra = "Contact: <sip:bob@192.0.2.4>\r\n";
    const Source src{"192.0.2.101", 5060};
    std::vector<char> full_buf(4096);
    const std::string_view full =
        write_response(req->msg, req->core, 302, "Moved Temporarily", extra, kKey, full_buf, src);
    REQUIRE_FALSE(full.empty());
    const std::string expected(full);

    constexpr char kCanary = '\x5a';
    std::size_t non_empty_at = 0, overwritten_at = 0;
    bool any_non_empty = false, any_overwritten = false;
    for (std::size_t size = 0; size < expected.size(); ++size) {
        std::vector<char> arr(expected.size() + 64, kCanary);
        const std::string_view out =
            write_response(req->msg, req->core, 302, "Moved Temporarily", extra, kKey,
                           std::span<char>(arr.data(), size), src);
        if (!out.empty() && !any_non_empty) {
            any_non_empty = true;
            non_empty_at = size;
        }
        for (std::size_t i = size; i < arr.size(); ++i) {
            if (arr[i] != kCanary && !any_overwritten) {
                any_overwritten = true;
                overwritten_at = size;
            }
        }
    }
    CAPTURE(non_empty_at);
    CAPTURE(overwritten_at);
    CHECK_FALSE(any_non_empty);
    CHECK_FALSE(any_overwritten);

    // Exactly the full length fits.
    std::vector<char> exact(expected.size() + 8, kCanary);
    const std::string_view out =
        write_response(req->msg, req->core, 302, "Moved Temporarily", extra, kKey,
                       std::span<char>(exact.data(), expected.size()), src);
    CHECK(out == expected);
    CHECK(exact[expected.size()] == kCanary);
}

TEST_CASE("ResponseWriter: overflow reported, finish() empty") {
    auto req = make_req(ReqParts{});
    REQUIRE(req->fault == Fault::None);
    bool all_empty = true, all_overflow = true, canary_ok = true;
    for (std::size_t size : {std::size_t{0}, std::size_t{10}, std::size_t{40}, std::size_t{200}}) {
        std::vector<char> arr(size + 32, '#');
        ResponseWriter w(std::span<char>(arr.data(), size));
        w.begin(req->msg, req->core, 302, "Moved Temporarily", kKey);
        w.add_header("Contact", "<sip:bob@192.0.2.4>");
        if (!w.finish().empty()) all_empty = false;
        if (!w.overflow()) all_overflow = false;
        for (std::size_t i = size; i < arr.size(); ++i)
            if (arr[i] != '#') canary_ok = false;
    }
    CHECK(all_empty);
    CHECK(all_overflow);
    CHECK(canary_ok);
}

TEST_CASE("write_response: compact-form request headers are copied as the same headers") {
    const std::string text =
        "INVITE sip:bob@biloxi.com SIP/2.0\r\n"
        "v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKcompact\r\n"
        "t: <sip:bob@biloxi.com>\r\n"
        "f: <sip:alice@atlanta.com>;tag=88\r\n"
        "i: compact-call-id\r\n"
        "CSeq: 1 INVITE\r\n"
        "l: 0\r\n"
        "\r\n";
    Message m;
    REQUIRE(parse_message(text, m) == ParseStatus::Ok);
    RequestCore core;
    REQUIRE(parse_request_core(m, ParseStatus::Ok, core) == Fault::None);
    std::vector<char> buf(2048);
    const std::string_view out = write_response(m, core, 404, "Not Found", {}, kKey, buf);
    REQUIRE_FALSE(out.empty());
    Message r;
    REQUIRE(parse_message(out, r) == ParseStatus::Ok);
    CHECK(r.status_code == 404);
    REQUIRE(r.find(HeaderId::Via) != nullptr);
    CHECK(r.find(HeaderId::Via)->value == "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKcompact");
    REQUIRE(r.find(HeaderId::From) != nullptr);
    CHECK(r.find(HeaderId::From)->value == "<sip:alice@atlanta.com>;tag=88");
    REQUIRE(r.find(HeaderId::CallId) != nullptr);
    CHECK(r.find(HeaderId::CallId)->value == "compact-call-id");
    REQUIRE(r.find(HeaderId::To) != nullptr);
    FromTo to;
    REQUIRE(parse_from_to(r.find(HeaderId::To)->value, to));
    CHECK(to.tag.size() == 16u);
}

TEST_CASE("default_reason: RFC 3261 §21 phrases") {
    CHECK(default_reason(100) == "Trying");
    CHECK(default_reason(200) == "OK");
    CHECK(default_reason(302) == "Moved Temporarily");
    CHECK(default_reason(400) == "Bad Request");
    CHECK(default_reason(401) == "Unauthorized");
    CHECK(default_reason(403) == "Forbidden");
    CHECK(default_reason(404) == "Not Found");
    CHECK(default_reason(405) == "Method Not Allowed");
    CHECK(default_reason(416) == "Unsupported URI Scheme");
    CHECK(default_reason(420) == "Bad Extension");
    CHECK(default_reason(423) == "Interval Too Brief");
    CHECK(default_reason(483) == "Too Many Hops");
    CHECK(default_reason(500) == "Server Internal Error");
    CHECK(default_reason(503) == "Service Unavailable");
    CHECK(default_reason(513) == "Message Too Large");
    CHECK(default_reason(999) == "Unknown");
    CHECK(default_reason(0) == "Unknown");
}
