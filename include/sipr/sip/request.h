#pragma once
// The mandatory parts of a request that every service needs, checked in the order of DESIGN §4,
// with a named fault for the 400 reason phrase.
#include <cstdint>
#include <string_view>

#include "sipr/sip/headers.h"
#include "sipr/sip/message.h"

namespace sipr::sip {

enum class Fault : uint8_t {
    None,
    NoVia,   // nowhere to answer: drop
    BadVia,  // nowhere to answer: drop
    MissingFrom,
    BadFrom,
    MissingTo,
    BadTo,
    MissingCallId,
    BadCallId,
    MissingCSeq,
    BadCSeq,
    CSeqMethodMismatch,
    BadMaxForwards,
    BadContentLength,
    BareCr,  // a CR not ending a line, outside the headers a 400 copies (ParseStatus::BareCr)
    BadRequestUri,
};

// The 400 reason phrase that names the fault ("Missing From Header", ...).
[[nodiscard]] std::string_view fault_reason(Fault f) noexcept;

// True when the fault leaves no usable Via, so no response can be sent.
[[nodiscard]] constexpr bool fault_is_unanswerable(Fault f) noexcept {
    return f == Fault::NoVia || f == Fault::BadVia;
}

struct RequestCore {
    Via top_via;
    FromTo from;
    FromTo to;
    std::string_view call_id;
    CSeq cseq;
    bool has_max_forwards = false;
    uint32_t max_forwards = 70;
    Uri request_uri;
    UriStatus request_uri_status = UriStatus::Malformed;
};

// Checks a parsed request's mandatory headers in the order Via, From, To, Call-ID, CSeq (and its
// method), Content-Length, Max-Forwards, Request-URI and fills `out`. A header that must appear
// once but appears twice is malformed. A response (not a request) gives BadRequestUri. An
// unsupported Request-URI scheme is not a fault here: see request_uri_status (the service answers
// 416). `parse` is what parse_message returned (BadContentLength and BareCr become the faults of
// those names once the Via is known good).
[[nodiscard]] Fault parse_request_core(const Message& m, ParseStatus parse,
                                       RequestCore& out) noexcept;

}  // namespace sipr::sip
