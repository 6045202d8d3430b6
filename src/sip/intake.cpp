#include "sipr/sip/intake.h"

namespace sipr::sip {

IntakeResult intake(std::string_view bytes, std::size_t max_message, std::size_t max_headers,
                    Message& msg, RequestCore& core) noexcept {
    IntakeResult r;
    ParseLimits limits;
    limits.max_headers = max_headers;
    // Parse even an oversized datagram (up to the UDP maximum) so that it can get its 513.
    limits.max_size = 65535;
    ParseStatus st = parse_message(bytes, msg, limits);
    if (st == ParseStatus::Malformed || st == ParseStatus::TooLarge) {
        r.drop = bytes.size() > max_message ? base::DropReason::TooLarge : base::DropReason::NotSip;
        return r;
    }
    if (!msg.is_request) {
        r.drop = base::DropReason::Response;
        return r;
    }
    Fault f = parse_request_core(msg, st, core);
    if (fault_is_unanswerable(f)) {
        r.drop = st == ParseStatus::TooManyHeaders ? base::DropReason::TooManyHeaders
                                                   : base::DropReason::NoVia;
        return r;
    }
    r.action = IntakeAction::Respond;
    if (bytes.size() > max_message) {
        r.status = 513;
        r.reason = "Message Too Large";
        return r;
    }
    if (st == ParseStatus::TooManyHeaders) {
        r.status = 400;
        r.reason = "Too Many Headers";
        return r;
    }
    if (f != Fault::None) {
        r.status = 400;
        r.reason = fault_reason(f);
        return r;
    }
    r.action = IntakeAction::Proceed;
    return r;
}

}  // namespace sipr::sip
