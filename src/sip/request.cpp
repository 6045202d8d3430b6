#include "sipr/sip/request.h"

#include "sipr/base/ascii.h"

namespace sipr::sip {

std::string_view fault_reason(Fault f) noexcept {
    switch (f) {
        case Fault::None:
            return "OK";
        case Fault::NoVia:
            return "Missing Via Header";
        case Fault::BadVia:
            return "Malformed Via Header";
        case Fault::MissingFrom:
            return "Missing From Header";
        case Fault::BadFrom:
            return "Malformed From Header";
        case Fault::MissingTo:
            return "Missing To Header";
        case Fault::BadTo:
            return "Malformed To Header";
        case Fault::MissingCallId:
            return "Missing Call-ID Header";
        case Fault::BadCallId:
            return "Malformed Call-ID Header";
        case Fault::MissingCSeq:
            return "Missing CSeq Header";
        case Fault::BadCSeq:
            return "Malformed CSeq Header";
        case Fault::CSeqMethodMismatch:
            return "CSeq Method Does Not Match Request";
        case Fault::BadMaxForwards:
            return "Malformed Max-Forwards Header";
        case Fault::BadContentLength:
            return "Bad Content-Length";
        case Fault::BareCr:
            return "Bare CR in Header";
        case Fault::BadRequestUri:
            return "Malformed Request-URI";
    }
    return "Bad Request";
}

namespace {

// RFC 3261 §25.1: callid = word [ "@" word ]; word has no white space or controls.
bool is_call_id(std::string_view v) noexcept {
    if (v.empty()) return false;
    for (char c : v) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) return false;
    }
    return true;
}

}  // namespace

Fault parse_request_core(const Message& m, ParseStatus parse, RequestCore& out) noexcept {
    // The typed parsers reset their own parts; only the scalars are reset here.
    out.call_id = {};
    out.has_max_forwards = false;
    out.max_forwards = 70;
    out.request_uri_status = UriStatus::Malformed;
    if (!m.is_request) return Fault::BadRequestUri;

    // One pass over the headers: the first of each mandatory one, and how many there are.
    const Header* via = nullptr;
    const Header* from = nullptr;
    const Header* to = nullptr;
    const Header* call_id = nullptr;
    const Header* cseq = nullptr;
    const Header* max_forwards = nullptr;
    unsigned n_from = 0, n_to = 0, n_call_id = 0, n_cseq = 0;
    for (std::size_t i = 0; i < m.header_count; ++i) {
        const Header& h = m.headers[i];
        switch (h.id) {
            case HeaderId::Via:
                if (via == nullptr) via = &h;
                break;
            case HeaderId::From:
                if (n_from++ == 0) from = &h;
                break;
            case HeaderId::To:
                if (n_to++ == 0) to = &h;
                break;
            case HeaderId::CallId:
                if (n_call_id++ == 0) call_id = &h;
                break;
            case HeaderId::CSeq:
                if (n_cseq++ == 0) cseq = &h;
                break;
            case HeaderId::MaxForwards:
                if (max_forwards == nullptr) max_forwards = &h;
                break;
            default:
                break;
        }
    }

    // The Call-ID is copied into every answer, a 400 for a bad From or To included (RFC 3261
    // §8.2.6.2), so it is taken before those checks can return.
    if (call_id != nullptr) out.call_id = call_id->value;

    if (via == nullptr) return Fault::NoVia;
    if (!parse_via(via->value, out.top_via)) return Fault::BadVia;

    if (from == nullptr) return Fault::MissingFrom;
    if (n_from > 1 || !parse_from_to(from->value, out.from)) return Fault::BadFrom;

    if (to == nullptr) return Fault::MissingTo;
    if (n_to > 1 || !parse_from_to(to->value, out.to)) return Fault::BadTo;

    if (call_id == nullptr || call_id->value.empty()) return Fault::MissingCallId;
    if (n_call_id > 1 || !is_call_id(call_id->value)) return Fault::BadCallId;

    if (cseq == nullptr) return Fault::MissingCSeq;
    if (n_cseq > 1 || !parse_cseq(cseq->value, out.cseq)) return Fault::BadCSeq;
    // RFC 3261 §8.1.1.5: the CSeq method MUST match the request's.
    if (out.cseq.method_text != m.method_name) return Fault::CSeqMethodMismatch;

    // A header other than those checked above holds a CR that ends no line (the parser made sure
    // the ones a 400 copies are free of it): answer 400 before anything else reads it.
    if (parse == ParseStatus::BareCr) return Fault::BareCr;
    if (parse == ParseStatus::BadContentLength) return Fault::BadContentLength;

    if (max_forwards != nullptr) {
        if (!parse_max_forwards(max_forwards->value, out.max_forwards))
            return Fault::BadMaxForwards;
        out.has_max_forwards = true;
    }

    out.request_uri_status = parse_uri(m.request_uri, out.request_uri);
    if (out.request_uri_status == UriStatus::Malformed) return Fault::BadRequestUri;
    return Fault::None;
}

}  // namespace sipr::sip
