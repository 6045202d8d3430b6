#include "sipr/sip/response.h"

#include "sipr/base/ascii.h"

namespace sipr::sip {

void make_to_tag(const base::SipKey& key, const RequestCore& core,
                 std::span<char, kToTagLength> out) noexcept {
    // A NUL separates the fields so that ("ab","c") and ("a","bc") hash differently.
    base::SipHasher h(key);
    h.update(core.call_id);
    h.update(std::string_view("\0", 1));
    h.update(core.from.tag);
    h.update(std::string_view("\0", 1));
    h.update(core.top_via.branch);
    uint64_t v = h.finish();
    static constexpr char kHex[] = "0123456789abcdef";
    for (std::size_t i = 0; i < kToTagLength; ++i) out[i] = kHex[(v >> (60 - 4 * i)) & 0xf];
}

namespace {

std::string_view strip_brackets(std::string_view host) noexcept {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        return host.substr(1, host.size() - 2);
    return host;
}

// Writes the top Via with received/rport as RFC 3261 §18.2.1 and RFC 3581 §4 ask.
void write_top_via(base::BufferWriter& w, std::string_view value, const Via& via,
                   const Source& src) noexcept {
    bool add_received =
        !src.ip.empty() && (via.has_rport || !base::iequals(strip_brackets(via.host), src.ip));
    bool fill_rport = !src.ip.empty() && via.has_rport && via.rport.empty();
    if (!add_received && !fill_rport) {
        w.append(value);
        return;
    }
    std::string_view head = value;
    if (!via.params.empty()) {
        head = value.substr(0, static_cast<std::size_t>(via.params.data() - value.data()));
        while (!head.empty() && (base::is_lws(head.back()) || head.back() == ';'))
            head.remove_suffix(1);
    }
    w.append(head);
    ParamIterator it(via.params);
    std::string_view n, v;
    bool has_value = false;
    while (it.next(n, v, has_value)) {
        if (base::iequals(n, "received")) continue;  // ours replaces the client's
        w.append(';');
        w.append(n);
        if (base::iequals(n, "rport") && !has_value) {
            w.append('=');
            w.append_uint(src.port);
        } else if (has_value) {
            w.append('=');
            w.append(v);
        }
    }
    w.append(";received=");
    w.append(src.ip);
}

}  // namespace

void ResponseWriter::begin(const Message& req, const RequestCore& core, uint16_t status,
                           std::string_view reason, const base::SipKey& tag_key,
                           const Source& source) noexcept {
    w_.append("SIP/2.0 ");
    w_.append_uint(status);
    w_.append(' ');
    w_.append(reason);
    w_.append("\r\n");
    bool top = true;
    for (std::size_t i = 0; i < req.header_count; ++i) {
        const Header& h = req.headers[i];
        if (h.id != HeaderId::Via) continue;
        w_.append("Via: ");
        if (top)
            write_top_via(w_, h.value, core.top_via, source);
        else
            w_.append(h.value);
        w_.append("\r\n");
        top = false;
    }
    if (const Header* from = req.find(HeaderId::From)) add_header("From", from->value);
    if (const Header* to = req.find(HeaderId::To)) {
        w_.append("To: ");
        w_.append(to->value);
        if (core.to.tag.empty()) {
            char tag[kToTagLength];
            make_to_tag(tag_key, core, tag);
            w_.append(";tag=");
            w_.append(std::string_view(tag, kToTagLength));
        }
        w_.append("\r\n");
    }
    add_header("Call-ID", core.call_id);
    if (const Header* cseq = req.find(HeaderId::CSeq)) add_header("CSeq", cseq->value);
}

void ResponseWriter::add_header(std::string_view name, std::string_view value) noexcept {
    w_.append(name);
    w_.append(": ");
    w_.append(value);
    w_.append("\r\n");
}

std::string_view ResponseWriter::finish() noexcept {
    w_.append("Content-Length: 0\r\n\r\n");
    if (w_.overflow()) return {};
    return w_.view();
}

std::string_view write_response(const Message& req, const RequestCore& core, uint16_t status,
                                std::string_view reason, std::string_view extra_headers,
                                const base::SipKey& tag_key, std::span<char> buf,
                                const Source& source) noexcept {
    ResponseWriter rw(buf);
    rw.begin(req, core, status, reason, tag_key, source);
    rw.raw(extra_headers);
    return rw.finish();
}

std::string_view default_reason(uint16_t status) noexcept {
    switch (status) {  // RFC 3261 §21
        case 100:
            return "Trying";
        case 180:
            return "Ringing";
        case 181:
            return "Call Is Being Forwarded";
        case 182:
            return "Queued";
        case 183:
            return "Session Progress";
        case 200:
            return "OK";
        case 202:
            return "Accepted";
        case 300:
            return "Multiple Choices";
        case 301:
            return "Moved Permanently";
        case 302:
            return "Moved Temporarily";
        case 305:
            return "Use Proxy";
        case 380:
            return "Alternative Service";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 402:
            return "Payment Required";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 406:
            return "Not Acceptable";
        case 407:
            return "Proxy Authentication Required";
        case 408:
            return "Request Timeout";
        case 410:
            return "Gone";
        case 413:
            return "Request Entity Too Large";
        case 414:
            return "Request-URI Too Long";
        case 415:
            return "Unsupported Media Type";
        case 416:
            return "Unsupported URI Scheme";
        case 420:
            return "Bad Extension";
        case 421:
            return "Extension Required";
        case 423:
            return "Interval Too Brief";
        case 480:
            return "Temporarily Unavailable";
        case 481:
            return "Call/Transaction Does Not Exist";
        case 482:
            return "Loop Detected";
        case 483:
            return "Too Many Hops";
        case 484:
            return "Address Incomplete";
        case 485:
            return "Ambiguous";
        case 486:
            return "Busy Here";
        case 487:
            return "Request Terminated";
        case 488:
            return "Not Acceptable Here";
        case 491:
            return "Request Pending";
        case 493:
            return "Undecipherable";
        case 500:
            return "Server Internal Error";
        case 501:
            return "Not Implemented";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Server Time-out";
        case 505:
            return "Version Not Supported";
        case 513:
            return "Message Too Large";
        case 600:
            return "Busy Everywhere";
        case 603:
            return "Decline";
        case 604:
            return "Does Not Exist Anywhere";
        case 606:
            return "Not Acceptable";
        default:
            return "Unknown";
    }
}

void append_q(base::BufferWriter& w, uint16_t q) noexcept {
    if (q >= 1000) {
        w.append('1');
        return;
    }
    if (q == 0) {
        w.append('0');
        return;
    }
    char digits[5] = {'0', '.', static_cast<char>('0' + q / 100),
                      static_cast<char>('0' + q / 10 % 10), static_cast<char>('0' + q % 10)};
    std::size_t n = 5;
    while (digits[n - 1] == '0') --n;
    w.append(std::string_view(digits, n));
}

}  // namespace sipr::sip
