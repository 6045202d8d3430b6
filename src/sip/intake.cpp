#include "sipr/sip/intake.h"

#include <algorithm>

#include "sipr/base/ascii.h"

namespace sipr::sip {

std::span<char> response_buffer(Sender& sender, std::span<char> fallback,
                                std::size_t limit) noexcept {
    limit = std::min(limit, fallback.size());
    std::span<char> b = sender.send_buffer();
    return b.size() >= limit ? b.first(limit) : fallback.first(limit);
}

bool serves_domain(std::span<const std::string> domains, std::string_view host) noexcept {
    if (domains.empty()) return true;
    return std::any_of(domains.begin(), domains.end(),
                       [host](const std::string& d) { return base::iequals(d, host); });
}

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
