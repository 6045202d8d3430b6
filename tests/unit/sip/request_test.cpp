// parse_request_core: the mandatory parts of a request, checked in the order of DESIGN §4 and
// request.h (Via, From, To, Call-ID, CSeq and its method, Content-Length, Max-Forwards,
// Request-URI), each fault named.
#include "sipr/sip/request.h"

#include <doctest/doctest.h>

#include <cstddef>
#include <memory>
#include <set>
#include <string>
#include <string_view>

namespace {

using namespace sipr::sip;

// A request assembled from parts; an empty part is left out entirely.
struct Parts {
    std::string start = "INVITE sip:bob@biloxi.com SIP/2.0";
    std::string via = "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds";
    std::string max_forwards = "Max-Forwards: 70";
    std::string to = "To: Bob <sip:bob@biloxi.com>";
    std::string from = "From: Alice <sip:alice@atlanta.com>;tag=1928301774";
    std::string call_id = "Call-ID: a84b4c76e66710@pc33.atlanta.com";
    std::string cseq = "CSeq: 314159 INVITE";
    std::string extra = "Contact: <sip:alice@pc33.atlanta.com>";
    std::string content_length = "Content-Length: 0";
    std::string body;

    std::string text() const {
        std::string t = start + "\r\n";
        for (const std::string* h :
             {&via, &max_forwards, &to, &from, &call_id, &cseq, &extra, &content_length})
            if (!h->empty()) t += *h + "\r\n";
        t += "\r\n";
        t += body;
        return t;
    }
};

struct Checked {
    std::string text;  // owns the bytes every view points into
    Message msg;
    ParseStatus parse = ParseStatus::Malformed;
    RequestCore core;
    Fault fault = Fault::None;
};

// Parses and checks; the result lives on the heap so that the views stay valid.
std::unique_ptr<Checked> check(const Parts& p) {
    auto c = std::make_unique<Checked>();
    c->text = p.text();
    c->parse = parse_message(c->text, c->msg);
    c->fault = parse_request_core(c->msg, c->parse, c->core);
    return c;
}

Fault fault_of(const Parts& p) {
    return check(p)->fault;
}

}  // namespace

TEST_CASE("parse_request_core: a good request fills every field") {
    Parts p;
    p.via = "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;rport";
    p.extra += "\r\nVia: SIP/2.0/UDP second.example.com;branch=z9hG4bKsecond";
    auto c = check(p);
    REQUIRE(c->parse == ParseStatus::Ok);
    REQUIRE(c->fault == Fault::None);
    const RequestCore& core = c->core;
    CHECK(core.top_via.host == "pc33.atlanta.com");
    CHECK(core.top_via.branch == "z9hG4bK776asdhds");
    CHECK(core.top_via.has_rport);
    CHECK(core.from.tag == "1928301774");
    CHECK(core.from.addr.uri.user == "alice");
    CHECK(core.to.tag.empty());
    CHECK(core.to.addr.uri.user == "bob");
    CHECK(core.call_id == "a84b4c76e66710@pc33.atlanta.com");
    CHECK(core.cseq.number == 314159u);
    CHECK(core.cseq.method == Method::Invite);
    CHECK(core.has_max_forwards);
    CHECK(core.max_forwards == 70u);
    CHECK(core.request_uri_status == UriStatus::Ok);
    CHECK(core.request_uri.scheme == Scheme::Sip);
    CHECK(core.request_uri.user == "bob");
    CHECK(core.request_uri.host == "biloxi.com");
}

TEST_CASE("parse_request_core: the top Via is the first value of a multi-value line") {
    Parts p;
    p.via =
        "Via: SIP/2.0/UDP first.example.com;branch=z9hG4bKone, SIP/2.0/UDP "
        "second.example.com;branch=z9hG4bKtwo";
    auto c = check(p);
    REQUIRE(c->fault == Fault::None);
    CHECK(c->core.top_via.host == "first.example.com");
    CHECK(c->core.top_via.branch == "z9hG4bKone");
}

TEST_CASE("parse_request_core: compact header forms") {
    Parts p;
    p.via = "v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKcompact";
    p.to = "t: <sip:bob@biloxi.com>";
    p.from = "f: <sip:alice@atlanta.com>;tag=88";
    p.call_id = "i: compact-call-id";
    p.content_length = "l: 0";
    auto c = check(p);
    REQUIRE(c->parse == ParseStatus::Ok);
    CHECK(c->fault == Fault::None);
    CHECK(c->core.top_via.branch == "z9hG4bKcompact");
    CHECK(c->core.from.tag == "88");
    CHECK(c->core.call_id == "compact-call-id");
}

TEST_CASE("parse_request_core: Max-Forwards absent or zero is not a fault") {
    Parts p;
    p.max_forwards.clear();
    auto c = check(p);
    CHECK(c->fault == Fault::None);
    CHECK_FALSE(c->core.has_max_forwards);
    CHECK(c->core.max_forwards == 70u);

    Parts z;
    z.max_forwards = "Max-Forwards: 0";
    auto d = check(z);
    CHECK(d->fault == Fault::None);  // 483 is the service's decision
    CHECK(d->core.has_max_forwards);
    CHECK(d->core.max_forwards == 0u);
}

TEST_CASE("parse_request_core: one missing or bad piece gives its fault") {
    {
        Parts p;
        p.via.clear();
        CHECK(fault_of(p) == Fault::NoVia);
    }
    {
        Parts p;
        p.via = "Via: garbage";
        CHECK(fault_of(p) == Fault::BadVia);
    }
    {
        Parts p;
        p.via = "Via: SIP/2.0/UDP";  // no sent-by
        CHECK(fault_of(p) == Fault::BadVia);
    }
    {
        Parts p;
        p.via = "Via: SIP/2.0/UDP pc33.atlanta.com:99999;branch=z9hG4bK1";
        CHECK(fault_of(p) == Fault::BadVia);
    }
    {
        Parts p;
        p.from.clear();
        CHECK(fault_of(p) == Fault::MissingFrom);
    }
    {
        Parts p;
        p.from = "From: Alice <sip:alice@atlanta.com;tag=1928301774";  // open '<'
        CHECK(fault_of(p) == Fault::BadFrom);
    }
    {
        Parts p;
        p.from = "From: \"Alice <sip:alice@atlanta.com>;tag=1928301774";  // open quote
        CHECK(fault_of(p) == Fault::BadFrom);
    }
    {
        Parts p;
        p.from = "From: <sip:@atlanta.com>;tag=1928301774";  // malformed URI inside <>
        CHECK(fault_of(p) == Fault::BadFrom);
    }
    {
        Parts p;
        p.to.clear();
        CHECK(fault_of(p) == Fault::MissingTo);
    }
    {
        Parts p;
        p.to = "To: Bob <sip:bob@biloxi.com> trailing";
        CHECK(fault_of(p) == Fault::BadTo);
    }
    {
        Parts p;
        p.call_id.clear();
        CHECK(fault_of(p) == Fault::MissingCallId);
    }
    {
        Parts p;
        p.call_id = "Call-ID: a84b4c76e66710 @pc33.atlanta.com";  // white space inside
        CHECK(fault_of(p) == Fault::BadCallId);
    }
    {
        Parts p;
        p.cseq.clear();
        CHECK(fault_of(p) == Fault::MissingCSeq);
    }
    {
        Parts p;
        p.cseq = "CSeq: abc INVITE";
        CHECK(fault_of(p) == Fault::BadCSeq);
    }
    {
        Parts p;
        p.cseq = "CSeq: 2147483648 INVITE";  // 2^31
        CHECK(fault_of(p) == Fault::BadCSeq);
    }
    {
        Parts p;
        p.cseq = "CSeq: 314159";
        CHECK(fault_of(p) == Fault::BadCSeq);
    }
    {
        Parts p;
        p.cseq = "CSeq: 314159 BYE";
        CHECK(fault_of(p) == Fault::CSeqMethodMismatch);
    }
    {
        Parts p;
        p.cseq = "CSeq: 314159 invite";  // methods are case-sensitive
        CHECK(fault_of(p) == Fault::CSeqMethodMismatch);
    }
    {
        Parts p;
        p.max_forwards = "Max-Forwards: 256";
        CHECK(fault_of(p) == Fault::BadMaxForwards);
    }
    {
        Parts p;
        p.max_forwards = "Max-Forwards: seventy";
        CHECK(fault_of(p) == Fault::BadMaxForwards);
    }
    {
        Parts p;
        p.start = "INVITE sip:@biloxi.com SIP/2.0";
        auto c = check(p);
        CHECK(c->parse == ParseStatus::Ok);
        CHECK(c->fault == Fault::BadRequestUri);
    }
    {
        Parts p;
        p.start = "INVITE sip:bob@biloxi.com:65536 SIP/2.0";
        CHECK(fault_of(p) == Fault::BadRequestUri);
    }
}

TEST_CASE("parse_request_core: a header that must appear once appears twice") {
    {
        Parts p;
        p.extra = "From: Eve <sip:eve@evil.example>;tag=666";
        CHECK(fault_of(p) == Fault::BadFrom);
    }
    {
        Parts p;
        p.extra = "To: Carol <sip:carol@chicago.com>";
        CHECK(fault_of(p) == Fault::BadTo);
    }
    {
        Parts p;
        p.extra = "Call-ID: second-call-id";
        CHECK(fault_of(p) == Fault::BadCallId);
    }
    {
        Parts p;
        p.extra = "CSeq: 314160 INVITE";
        CHECK(fault_of(p) == Fault::BadCSeq);
    }
    {
        // Several Vias are normal.
        Parts p;
        p.extra = "Via: SIP/2.0/UDP second.example.com;branch=z9hG4bKsecond";
        CHECK(fault_of(p) == Fault::None);
    }
}

TEST_CASE("parse_request_core: a response is not a request") {
    const std::string text =
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n"
        "To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n"
        "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
        "CSeq: 314159 INVITE\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    Message m;
    REQUIRE(parse_message(text, m) == ParseStatus::Ok);
    RequestCore core;
    CHECK(parse_request_core(m, ParseStatus::Ok, core) == Fault::BadRequestUri);
}

TEST_CASE("parse_request_core: Content-Length beyond the datagram") {
    Parts p;
    p.content_length = "Content-Length: 500";
    p.body = "v=0\r\n";
    auto c = check(p);
    REQUIRE(c->parse == ParseStatus::BadContentLength);
    CHECK(c->fault == Fault::BadContentLength);

    // The status passed in is what decides, whatever the message says.
    Parts good;
    auto g = check(good);
    REQUIRE(g->parse == ParseStatus::Ok);
    RequestCore core;
    CHECK(parse_request_core(g->msg, ParseStatus::BadContentLength, core) ==
          Fault::BadContentLength);
    CHECK(parse_request_core(g->msg, ParseStatus::Ok, core) == Fault::None);
}

TEST_CASE("parse_request_core: unknown methods compare their text") {
    Parts p;
    p.start = "FOO sip:bob@biloxi.com SIP/2.0";
    p.cseq = "CSeq: 7 FOO";
    auto c = check(p);
    REQUIRE(c->parse == ParseStatus::Ok);
    CHECK(c->fault == Fault::None);
    CHECK(c->core.cseq.method == Method::Unknown);
    CHECK(c->core.cseq.method_text == "FOO");

    Parts q;
    q.start = "FOO sip:bob@biloxi.com SIP/2.0";
    q.cseq = "CSeq: 7 BAR";  // both Unknown, different text
    CHECK(fault_of(q) == Fault::CSeqMethodMismatch);
}

TEST_CASE("parse_request_core: unsupported Request-URI scheme is not a fault") {
    Parts p;
    p.start = "INVITE http://example.com/bob SIP/2.0";
    auto c = check(p);
    REQUIRE(c->parse == ParseStatus::Ok);
    CHECK(c->fault == Fault::None);
    CHECK(c->core.request_uri_status == UriStatus::UnsupportedScheme);
    CHECK(c->core.request_uri.scheme_text == "http");

    Parts t;
    t.start = "INVITE tel:+1-201-555-0123 SIP/2.0";
    auto d = check(t);
    CHECK(d->fault == Fault::None);
    CHECK(d->core.request_uri_status == UriStatus::Ok);
    CHECK(d->core.request_uri.scheme == Scheme::Tel);
    CHECK(d->core.request_uri.user == "+1-201-555-0123");
}

TEST_CASE("parse_request_core: the earlier check wins") {
    {
        Parts p;  // no Via, no From
        p.via.clear();
        p.from.clear();
        CHECK(fault_of(p) == Fault::NoVia);
    }
    {
        Parts p;  // bad Via, bad CSeq
        p.via = "Via: nonsense";
        p.cseq = "CSeq: x";
        CHECK(fault_of(p) == Fault::BadVia);
    }
    {
        Parts p;  // no Via and a Content-Length beyond the datagram
        p.via.clear();
        p.content_length = "Content-Length: 500";
        auto c = check(p);
        CHECK(c->parse == ParseStatus::BadContentLength);
        CHECK(c->fault == Fault::NoVia);
    }
    {
        Parts p;  // bad Via and a Content-Length beyond the datagram
        p.via = "Via: nonsense";
        p.content_length = "Content-Length: 500";
        CHECK(fault_of(p) == Fault::BadVia);
    }
    {
        Parts p;
        p.from.clear();
        p.to.clear();
        CHECK(fault_of(p) == Fault::MissingFrom);
    }
    {
        Parts p;
        p.from = "From: <sip:alice@atlanta.com";
        p.to = "To: <sip:bob@biloxi.com";
        CHECK(fault_of(p) == Fault::BadFrom);
    }
    {
        Parts p;
        p.to.clear();
        p.call_id.clear();
        CHECK(fault_of(p) == Fault::MissingTo);
    }
    {
        Parts p;
        p.call_id.clear();
        p.cseq.clear();
        CHECK(fault_of(p) == Fault::MissingCallId);
    }
    {
        Parts p;
        p.call_id = "Call-ID: has space";
        p.cseq.clear();
        CHECK(fault_of(p) == Fault::BadCallId);
    }
    {
        Parts p;
        p.cseq.clear();
        p.max_forwards = "Max-Forwards: 300";
        CHECK(fault_of(p) == Fault::MissingCSeq);
    }
    {
        Parts p;  // a missing From beats a Content-Length beyond the datagram
        p.from.clear();
        p.content_length = "Content-Length: 500";
        auto c = check(p);
        CHECK(c->parse == ParseStatus::BadContentLength);
        CHECK(c->fault == Fault::MissingFrom);
    }
    {
        Parts p;  // the CSeq method is checked before the Content-Length
        p.cseq = "CSeq: 1 BYE";
        p.content_length = "Content-Length: 500";
        CHECK(fault_of(p) == Fault::CSeqMethodMismatch);
    }
    {
        Parts p;  // the Content-Length is checked before Max-Forwards
        p.max_forwards = "Max-Forwards: 300";
        p.content_length = "Content-Length: 500";
        CHECK(fault_of(p) == Fault::BadContentLength);
    }
    {
        Parts p;  // and before the Request-URI
        p.start = "INVITE sip:@biloxi.com SIP/2.0";
        p.content_length = "Content-Length: 500";
        CHECK(fault_of(p) == Fault::BadContentLength);
    }
    {
        Parts p;
        p.cseq = "CSeq: 1 BYE";
        p.max_forwards = "Max-Forwards: 300";
        CHECK(fault_of(p) == Fault::CSeqMethodMismatch);
    }
    {
        Parts p;
        p.cseq = "CSeq: nope INVITE";
        p.start = "INVITE sip:@biloxi.com SIP/2.0";
        CHECK(fault_of(p) == Fault::BadCSeq);
    }
    {
        Parts p;
        p.max_forwards = "Max-Forwards: 300";
        p.start = "INVITE sip:@biloxi.com SIP/2.0";
        CHECK(fault_of(p) == Fault::BadMaxForwards);
    }
    {
        Parts p;  // missing To, and From, Call-ID, CSeq all fine: the To wins over a bad URI
        p.to.clear();
        p.start = "INVITE sip:@biloxi.com SIP/2.0";
        CHECK(fault_of(p) == Fault::MissingTo);
    }
}

TEST_CASE("fault_reason: non-empty and distinct for every fault") {
    const Fault faults[] = {
        Fault::NoVia,
        Fault::BadVia,
        Fault::MissingFrom,
        Fault::BadFrom,
        Fault::MissingTo,
        Fault::BadTo,
        Fault::MissingCallId,
        Fault::BadCallId,
        Fault::MissingCSeq,
        Fault::BadCSeq,
        Fault::CSeqMethodMismatch,
        Fault::BadMaxForwards,
        Fault::BadContentLength,
        Fault::BareCr,
        Fault::BadRequestUri,
    };
    std::set<std::string_view> seen;
    for (Fault f : faults) {
        const std::string_view r = fault_reason(f);
        CAPTURE(static_cast<int>(f));
        CHECK_FALSE(r.empty());
        CHECK(seen.insert(r).second);
        // A reason phrase is one line of text (RFC 3261 §25.1 Reason-Phrase).
        CHECK(r.find_first_of("\r\n") == std::string_view::npos);
    }
    CHECK(seen.size() == 15u);
}

TEST_CASE("fault_is_unanswerable: only the Via faults") {
    static_assert(fault_is_unanswerable(Fault::NoVia));
    CHECK(fault_is_unanswerable(Fault::NoVia));
    CHECK(fault_is_unanswerable(Fault::BadVia));
    CHECK_FALSE(fault_is_unanswerable(Fault::None));
    CHECK_FALSE(fault_is_unanswerable(Fault::MissingFrom));
    CHECK_FALSE(fault_is_unanswerable(Fault::BadTo));
    CHECK_FALSE(fault_is_unanswerable(Fault::MissingCallId));
    CHECK_FALSE(fault_is_unanswerable(Fault::BadCallId));
    CHECK_FALSE(fault_is_unanswerable(Fault::CSeqMethodMismatch));
    CHECK_FALSE(fault_is_unanswerable(Fault::BadMaxForwards));
    CHECK_FALSE(fault_is_unanswerable(Fault::BadContentLength));
    CHECK_FALSE(fault_is_unanswerable(Fault::BadRequestUri));
}

// Regression: a 400 for a bad From or To went out with an empty Call-ID, because the Call-ID was
// taken only after the From/To checks (found by the registrar integration tests).
TEST_CASE("parse_request_core: the Call-ID is known even when From or To is at fault") {
    Parts no_from;
    no_from.from.clear();
    auto a = check(no_from);
    CHECK(a->fault == Fault::MissingFrom);
    CHECK(a->core.call_id == "a84b4c76e66710@pc33.atlanta.com");

    Parts bad_to;
    bad_to.to = "To: sip:bob@biloxi.com>";
    auto b = check(bad_to);
    CHECK(b->fault == Fault::BadTo);
    CHECK(b->core.call_id == "a84b4c76e66710@pc33.atlanta.com");

    Parts bad_call_id;
    bad_call_id.call_id = "Call-ID: has space";
    auto c = check(bad_call_id);
    CHECK(c->fault == Fault::BadCallId);
}
