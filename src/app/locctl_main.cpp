// sip-locctl: the operator's CLI for subscribers and bindings (DESIGN §2, §8).
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common.h"
#include "sipr/base/ascii.h"
#include "sipr/location/admin.h"
#include "sipr/location/binding.h"
#include "sipr/net/endpoint.h"
#include "sipr/registrar/digest.h"
#include "sipr/registrar/registrar.h"
#include "sipr/sip/aor.h"
#include "sipr/sip/headers.h"
#include "sipr/sip/message.h"

namespace {

using namespace sipr;
const std::string kProgram = "sip-locctl";

std::string hex_digest(const EVP_MD* md, const std::string& text) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(text.data(), text.size(), out, &len, md, nullptr);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < len; ++i) {
        s += kHex[out[i] >> 4];
        s += kHex[out[i] & 0xf];
    }
    return s;
}

std::string normalize_or_die(const std::string& text) {
    char buf[sip::kMaxAorLength];
    std::size_t len = 0;
    if (sip::normalize_aor(text, {}, buf, len) != sip::AorStatus::Ok)
        app::die(kProgram,
                 "'" + text + "' is not a SIP address-of-record (e.g. sip:alice@example.com)");
    return std::string(buf, len);
}

// The location data through location::Admin (with sentinel:// on the primary the Sentinels
// name; with cluster:// following -MOVED and -ASK, as redis-cli -c does). Any failure ends the
// program with its one line.
class Redis {
  public:
    Redis(const std::string& url_text, const std::string& password_file) {
        location::RedisSetup setup =
            app::check_redis_setup(kProgram, url_text, password_file, "", 2000);
        ok(admin_.open(setup.primary, setup.target.mode == location::RedisMode::Cluster, 2000));
    }
    location::Admin* operator->() noexcept { return &admin_; }
    static void ok(const std::string& why) {
        if (!why.empty()) app::die(kProgram, why);
    }

  private:
    location::Admin admin_;
};

int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// The length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF) with its code point in `cp`, or 0 when there is none.
std::size_t utf8_at(std::string_view s, std::size_t i, uint32_t& cp) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char b0 = byte(i);
    if (b0 < 0x80) {
        cp = b0;
        return 1;
    }
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the range of the second byte
    if (b0 >= 0xc2 && b0 <= 0xdf) {
        n = 2;
        cp = b0 & 0x1fu;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
        n = 3;
        cp = b0 & 0x0fu;
        if (b0 == 0xe0) lo = 0xa0;  // overlong
        if (b0 == 0xed) hi = 0x9f;  // surrogates
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
        n = 4;
        cp = b0 & 0x07u;
        if (b0 == 0xf0) lo = 0x90;  // overlong
        if (b0 == 0xf4) hi = 0x8f;  // above U+10FFFF
    } else {
        return 0;
    }
    if (s.size() - i < n) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        const unsigned char b = byte(i + k);
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf)) return 0;
        cp = cp << 6 | (b & 0x3fu);
    }
    return n;
}

// Code points a terminal acts on or that reorder or break lines: C0 controls, DEL, C1 controls
// (0x80-0x9f as code points: CSI, OSC, ... in 8-bit terminals), the line and paragraph
// separators and the bidirectional embeddings, overrides and isolates.
bool is_unsafe(uint32_t cp) {
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

// Network-supplied text (a User-Agent, a Contact, a Path, ...) made safe for the operator's
// terminal or a JSON reader. The rule, the same in both forms: printable text, UTF-8 included,
// passes as it is; every code point that is_unsafe() names is escaped, and so is every byte that
// is not part of well-formed UTF-8. As plain text each escaped byte becomes \xHH (backslash, x,
// two hex digits) and a backslash is doubled, so the output is unambiguous. In JSON (RFC 8259) the
// quote and the backslash are escaped, an unsafe code point becomes \uXXXX and a byte that is not
// UTF-8 becomes U+FFFD (the replacement character), so the document is valid UTF-8 JSON whatever
// was stored.
std::string safe_text(std::string_view s, bool json) {
    std::string out;
    out.reserve(s.size());
    char buf[16];
    for (std::size_t i = 0; i < s.size();) {
        uint32_t cp = 0;
        const std::size_t n = utf8_at(s, i, cp);
        if (n != 0 && !is_unsafe(cp)) {
            if (cp == '\\' || (json && cp == '"')) out += '\\';
            out.append(s.substr(i, n));
            i += n;
            continue;
        }
        if (json) {
            std::snprintf(buf, sizeof buf, "\\u%04x", n != 0 ? cp : 0xfffdu);
            out += buf;
            i += n != 0 ? n : 1;
            continue;
        }
        for (std::size_t k = 0; k < (n != 0 ? n : 1); ++k) {
            std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(s[i + k]));
            out += buf;
        }
        i += n != 0 ? n : 1;
    }
    return out;
}

std::string json_escape(std::string_view s) {
    return safe_text(s, true);
}

// For the text table: see safe_text.
std::string text_escape(std::string_view s) {
    return safe_text(s, false);
}

int cmd_show(Redis& r, const std::string& aor_text, bool json) {
    std::string aor = normalize_or_die(aor_text);
    std::vector<location::StoredBinding> stored;
    std::size_t garbage = 0;
    Redis::ok(r->bindings(aor, stored, garbage));
    struct Row {
        std::string key;
        location::Binding b;
    };
    std::vector<Row> rows;
    int64_t now = now_ms();
    for (location::StoredBinding& sb : stored)
        if (sb.binding.expires_at_ms > now)
            rows.push_back({std::move(sb.key), std::move(sb.binding)});
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
        if (a.b.q != b.b.q) return a.b.q > b.b.q;
        return a.b.updated_at_ms > b.b.updated_at_ms;
    });
    if (json) {
        std::printf("{\"aor\":\"%s\",\"bindings\":[", json_escape(aor).c_str());
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const auto& b = rows[i].b;
            std::printf(
                "%s{\"contact\":\"%s\",\"q\":%s,\"expires_in\":%lld,\"received\":\"%s\","
                "\"user_agent\":\"%s\",\"instance\":\"%s\",\"path\":\"%s\",\"call_id\":\"%s\","
                "\"cseq\":%u}",
                i == 0 ? "" : ",", json_escape(b.contact).c_str(), registrar::format_q(b.q).c_str(),
                static_cast<long long>((b.expires_at_ms - now + 999) / 1000),
                json_escape(b.received).c_str(), json_escape(b.user_agent).c_str(),
                json_escape(b.instance).c_str(), json_escape(b.path).c_str(),
                json_escape(b.call_id).c_str(), b.cseq);
        }
        std::printf("]}\n");
        return 0;
    }
    std::printf("%s: %zu binding%s\n", text_escape(aor).c_str(), rows.size(),
                rows.size() == 1 ? "" : "s");
    if (!rows.empty()) {
        std::printf("%-48s %5s %8s  %-22s %s\n", "CONTACT", "Q", "EXPIRES", "RECEIVED",
                    "USER-AGENT / INSTANCE / PATH");
        for (const auto& row : rows) {
            const auto& b = row.b;
            // Every field came from the network (the REGISTER): escaped for the terminal.
            std::string extra = text_escape(b.user_agent);
            if (!b.instance.empty())
                extra +=
                    (extra.empty() ? "" : " ") + std::string("instance=") + text_escape(b.instance);
            if (!b.path.empty())
                extra += (extra.empty() ? "" : " ") + std::string("path=") + text_escape(b.path);
            std::printf("%-48s %5s %7llds  %-22s %s\n", text_escape(b.contact).c_str(),
                        registrar::format_q(b.q).c_str(),
                        static_cast<long long>((b.expires_at_ms - now + 999) / 1000),
                        text_escape(b.received).c_str(), extra.c_str());
        }
    }
    if (garbage != 0) std::printf("(%zu unreadable entries skipped)\n", garbage);
    return 0;
}

int cmd_bind(Redis& r, const std::string& aor_text, const std::string& contact, uint32_t expires,
             double q) {
    std::string aor = normalize_or_die(aor_text);
    sip::NameAddr na;
    if (!sip::parse_name_addr(contact, na))
        app::die(kProgram,
                 "'" + contact + "' is not a contact URI (e.g. sip:alice@192.0.2.10:5060)");
    if (q < 0 || q > 1) app::die(kProgram, "--q must be between 0 and 1");
    location::Binding b;
    b.call_id = "sip-locctl";
    // A CSeq that only grows, so a later bind of the same contact replaces this one.
    b.cseq = static_cast<uint32_t>((now_ms() / 1000) & 0x7fffffff);
    b.contact = na.uri_text;
    b.q = static_cast<uint16_t>(std::lround(q * 1000));
    b.user_agent = "sip-locctl";
    // One REGISTER of one contact, as the registrar applies it (register.lua).
    location::RegisterChanges ch;
    ch.aor = aor;
    ch.call_id = b.call_id;
    ch.cseq = b.cseq;
    ch.max_contacts = 100000;
    ch.by_operator = true;
    ch.contacts.push_back(location::ContactChange{registrar::contact_key(na.uri, na.uri_text),
                                                  expires, location::pack_binding_tail(b)});
    Redis::ok(r->apply(ch));
    std::printf("bound %s -> %s for %us (q=%s)\n", aor.c_str(), std::string(na.uri_text).c_str(),
                expires, registrar::format_q(b.q).c_str());
    return 0;
}

int cmd_unbind(Redis& r, const std::string& aor_text, const std::string& contact) {
    std::string aor = normalize_or_die(aor_text);
    long long removed = 0;
    if (contact.empty()) {
        Redis::ok(r->remove_bindings(aor, {}, removed));
        std::printf("removed every binding of %s (%lld)\n", aor.c_str(), removed);
    } else {
        sip::NameAddr na;
        if (!sip::parse_name_addr(contact, na))
            app::die(kProgram, "'" + contact + "' is not a contact URI");
        // The binding key is the contact (normalised) or its +sip.instance: try both forms.
        const std::string keys[] = {registrar::contact_key(na.uri, na.uri_text), contact};
        Redis::ok(r->remove_bindings(aor, keys, removed));
        std::printf("removed %lld binding(s) of %s\n", removed, aor.c_str());
    }
    return 0;
}

// --algorithms: known names (blanks around them ignored), each once, in the canonical spelling
// ("SHA-256,MD5"); "" when none was given.
std::string algorithms_field(const std::vector<std::string>& names) {
    std::string out;
    std::vector<registrar::DigestAlgorithm> seen;
    for (const std::string& item : names) {
        const std::size_t b = item.find_first_not_of(" \t");
        const std::string n =
            b == std::string::npos ? "" : item.substr(b, item.find_last_not_of(" \t") - b + 1);
        registrar::DigestAlgorithm a;
        if (n.empty() || !registrar::parse_algorithm(n, a))
            app::die(kProgram, "--algorithms: '" + item + "' is not SHA-256 or MD5");
        for (registrar::DigestAlgorithm o : seen)
            if (o == a) app::die(kProgram, "--algorithms: " + n + " is listed twice");
        seen.push_back(a);
        if (!out.empty()) out += ',';
        out += registrar::algorithm_name(a);
    }
    return out;
}

int cmd_user_add(Redis& r, const std::string& aor_text, const std::string& password,
                 const std::string& realm_flag, const std::vector<std::string>& algorithm_names) {
    std::string aor = normalize_or_die(aor_text);
    const std::string algorithms = algorithms_field(algorithm_names);
    std::size_t colon = aor.find(':'), at = aor.rfind('@');
    std::string user = aor.substr(colon + 1, at - colon - 1);
    std::string realm = realm_flag.empty() ? aor.substr(at + 1) : realm_flag;
    std::string a1 = user + ":" + realm + ":" + password;
    Redis::ok(r->put_subscriber(
        aor, location::SubscriberRecord{hex_digest(EVP_md5(), a1), hex_digest(EVP_sha256(), a1),
                                        realm, algorithms}));
    std::printf("user %s added (realm %s, algorithms %s)\n", aor.c_str(), realm.c_str(),
                algorithms.empty() ? "the registrar's --auth-algorithms" : algorithms.c_str());
    return 0;
}

int cmd_user_del(Redis& r, const std::string& aor_text) {
    std::string aor = normalize_or_die(aor_text);
    bool existed = false;
    Redis::ok(r->delete_subscriber(aor, existed));
    std::printf(existed ? "user %s deleted\n" : "user %s did not exist\n", aor.c_str());
    return 0;
}

// One request/response exchange over UDP with RFC 3261 §17.1.2 retransmission (T1 = 500 ms,
// doubling up to 4 s) until `timeout_ms`. `build` gets the local address text and the branch and
// returns the request. Returns the response text ("" on no answer).
std::string transact(
    const sockaddr_storage& to, uint32_t timeout_ms,
    const std::function<std::string(const std::string& local, const std::string& branch)>& build) {
    int fd = ::socket(to.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) app::die(kProgram, "cannot open a UDP socket");
    sockaddr_storage any{};
    any.ss_family = to.ss_family;
    const auto* to_sa = reinterpret_cast<const sockaddr*>(&to);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&any), net::sockaddr_len(to_sa)) != 0)
        app::die(kProgram, "cannot bind a UDP socket");
    sockaddr_storage local{};
    socklen_t ll = sizeof local;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll);
    std::mt19937_64 rng(std::random_device{}());
    std::string branch = "z9hG4bK-locctl-" + std::to_string(rng());
    std::string host = to.ss_family == AF_INET6 ? "[::1]" : "127.0.0.1";
    std::string local_text =
        host + ":" + std::to_string(net::port_of(reinterpret_cast<sockaddr*>(&local)));
    std::string msg = build(local_text, branch);
    auto start = std::chrono::steady_clock::now();
    uint32_t interval = 500;
    char buf[65536];
    for (;;) {
        ::sendto(fd, msg.data(), msg.size(), 0, to_sa, net::sockaddr_len(to_sa));
        auto elapsed = static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - start)
                                                 .count());
        if (elapsed >= timeout_ms) break;
        pollfd p{fd, POLLIN, 0};
        int wait = static_cast<int>(std::min(interval, timeout_ms - elapsed));
        if (::poll(&p, 1, wait) > 0) {
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            std::string_view bytes(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
            sip::Message m;
            if (n > 0 && sip::parse_message(bytes, m) != sip::ParseStatus::Malformed &&
                !m.is_request && m.status_code >= 200 && m.find(sip::HeaderId::Via) != nullptr &&
                m.find(sip::HeaderId::Via)->value.find(branch) != std::string_view::npos) {
                ::close(fd);
                return std::string(bytes);
            }
        }
        interval = std::min<uint32_t>(interval * 2, 4000);
    }
    ::close(fd);
    return {};
}

sockaddr_storage endpoint_or_die(const std::string& target) {
    sockaddr_storage to{};
    if (!net::parse_endpoint(target, to))
        app::die(kProgram, "'" + target + "' is not host:port (e.g. 127.0.0.1:5070)");
    return to;
}

std::string random_token() {
    std::mt19937_64 rng(std::random_device{}());
    return std::to_string(rng());
}

// Prints the answer's status line (and its Contact lines when `contacts` is set), or that none
// came. Parses it into `m` for the caller. Returns its status code, 0 when there was no answer.
uint16_t report(const std::string& target, uint32_t timeout_ms, std::string_view resp,
                bool contacts, sip::Message& m) {
    if (resp.empty()) {
        std::printf("%s: no answer within %u ms\n", target.c_str(), timeout_ms);
        return 0;
    }
    (void)sip::parse_message(resp, m);
    // The answer's text came from the network: escaped for the terminal (see safe_text).
    std::printf("%s: %u %s\n", target.c_str(), m.status_code, text_escape(m.reason).c_str());
    if (contacts)
        for (std::size_t i = 0; i < m.header_count; ++i)
            if (m.headers[i].id == sip::HeaderId::Contact)
                std::printf("  Contact: %s\n", text_escape(m.headers[i].value).c_str());
    return m.status_code;
}

// Exit status of a command that sent one request: 0 when the answer was `want`, 1 on another
// answer, 2 on none.
int exit_for(uint16_t got, uint16_t want) {
    return got == 0 ? 2 : got == want ? 0 : 1;
}

// OPTIONS to HOST:PORT; exit 0 on 200, 1 on another answer, 2 on none.
int cmd_ping(const std::string& target, uint32_t timeout_ms) {
    sockaddr_storage to = endpoint_or_die(target);
    std::string resp =
        transact(to, timeout_ms, [&](const std::string& local, const std::string& branch) {
            return "OPTIONS sip:" + target + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local +
                   ";branch=" + branch +
                   ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:sip-locctl@localhost>;tag=" +
                   random_token() + "\r\nTo: <sip:" + target + ">\r\nCall-ID: locctl-" +
                   random_token() + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        });
    sip::Message m;
    return exit_for(report(target, timeout_ms, resp, false, m), 200);
}

// REGISTER AOR -> CONTACT at a registrar, as a user agent would; prints the answer and the
// bindings it lists. Exit 0 on 200.
int cmd_register(const std::string& aor_text, const std::string& contact, const std::string& target,
                 uint32_t expires, uint32_t timeout_ms) {
    std::string aor = normalize_or_die(aor_text);
    sockaddr_storage to = endpoint_or_die(target);
    std::string domain = aor.substr(aor.rfind('@') + 1);
    std::string resp =
        transact(to, timeout_ms, [&](const std::string& local, const std::string& branch) {
            return "REGISTER sip:" + domain + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local +
                   ";branch=" + branch + ";rport\r\nMax-Forwards: 70\r\nFrom: <" + aor +
                   ">;tag=" + random_token() + "\r\nTo: <" + aor + ">\r\nCall-ID: locctl-reg-" +
                   random_token() + "\r\nCSeq: 1 REGISTER\r\nContact: <" + contact +
                   ">\r\nExpires: " + std::to_string(expires) +
                   "\r\nUser-Agent: sip-locctl\r\nContent-Length: 0\r\n\r\n";
        });
    sip::Message m;
    return exit_for(report(target, timeout_ms, resp, true, m), 200);
}

// INVITE AOR at a redirect server; prints the answer and its Contacts, then ACKs a final non-2xx
// answer as RFC 3261 §17.1.1.3 asks. Exit 0 on 302.
int cmd_invite(const std::string& uri, const std::string& target, uint32_t timeout_ms) {
    sockaddr_storage to = endpoint_or_die(target);
    std::string from_tag = random_token(), call_id = "locctl-inv-" + random_token();
    std::string via_line;
    std::string resp =
        transact(to, timeout_ms, [&](const std::string& local, const std::string& branch) {
            via_line = "Via: SIP/2.0/UDP " + local + ";branch=" + branch + ";rport\r\n";
            return "INVITE " + uri + " SIP/2.0\r\n" + via_line +
                   "Max-Forwards: 70\r\nFrom: <sip:sip-locctl@localhost>;tag=" + from_tag +
                   "\r\nTo: <" + uri + ">\r\nCall-ID: " + call_id +
                   "\r\nCSeq: 1 INVITE\r\nContact: <sip:sip-locctl@localhost>\r\nContent-Length: "
                   "0\r\n\r\n";
        });
    sip::Message m;
    const uint16_t status = report(target, timeout_ms, resp, true, m);
    if (status >= 300) {
        const sip::Header* to_h = m.find(sip::HeaderId::To);
        std::string ack = "ACK " + uri + " SIP/2.0\r\n" + via_line +
                          "Max-Forwards: 70\r\nFrom: <sip:sip-locctl@localhost>;tag=" + from_tag +
                          "\r\nTo: " + std::string(to_h != nullptr ? to_h->value : "") +
                          "\r\nCall-ID: " + call_id +
                          "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
        int fd = ::socket(to.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        const auto* to_sa = reinterpret_cast<const sockaddr*>(&to);
        if (fd >= 0) {
            ::sendto(fd, ack.data(), ack.size(), 0, to_sa, net::sockaddr_len(to_sa));
            ::close(fd);
        }
    }
    return exit_for(status, 302);
}

// ------------------------------------------------------------------------------------------------
// watch: registration events (src/location/README.md, "Events")

volatile std::sig_atomic_t g_stop = 0;

// Prints one event: a line of text, or (json) one JSON object per line with the stream entry's
// id ("" on a Cluster) and the fields of the README's event format, `changes` an array.
// A field of an event as text: a string as it is, a number or a boolean as JSON writes it, ""
// when absent.
std::string field(const nlohmann::json& ev, const char* name) {
    const auto it = ev.find(name);
    if (it == ev.end() || it->is_null()) return {};
    return it->is_string() ? it->get<std::string>() : it->dump();
}

int64_t number(const nlohmann::json& ev, const char* name) {
    const std::string t = field(ev, name);
    int64_t v = 0;
    std::from_chars(t.data(), t.data() + t.size(), v);
    return v;
}

void print_event(std::string_view id, const nlohmann::json& ev, bool json) {
    // From Pub/Sub the event is one JSON object; from the stream its fields are strings and
    // `changes` is the array as JSON text.
    nlohmann::json changes = nlohmann::json::array();
    if (const auto c = ev.find("changes"); c != ev.end()) {
        if (c->is_array()) {
            changes = *c;
        } else if (c->is_string()) {
            nlohmann::json parsed = nlohmann::json::parse(c->get<std::string>(), nullptr, false);
            if (parsed.is_array()) changes = std::move(parsed);
        }
    }
    const auto field_or = [&](const char* name, const char* dflt) {
        std::string v = field(ev, name);
        return v.empty() ? std::string(dflt) : v;
    };
    const bool all = field(ev, "all") == "1" || field(ev, "all") == "true";
    if (json) {
        nlohmann::ordered_json out = {{"id", std::string(id)},
                                      {"v", number(ev, "v")},
                                      {"aor", field(ev, "aor")},
                                      {"at", number(ev, "at")},
                                      {"src", field(ev, "src")},
                                      {"all", all},
                                      {"bindings", number(ev, "bindings")},
                                      {"changes", nlohmann::ordered_json::array()}};
        for (const nlohmann::json& c : changes) {
            if (!c.is_object()) continue;
            nlohmann::ordered_json o = {{"kind", field(c, "kind")},
                                        {"key", field(c, "key")},
                                        {"contact", field(c, "contact")},
                                        {"expires", number(c, "expires")}};
            if (c.contains("count")) o["count"] = number(c, "count");
            out["changes"].push_back(std::move(o));
        }
        std::printf("%s\n",
                    out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
        std::string line = field_or("at", "?") + " " + text_escape(field(ev, "aor")) + " " +
                           text_escape(field_or("src", "?")) + (all ? " (all removed)" : "") +
                           ": bindings=" + std::to_string(number(ev, "bindings"));
        for (const nlohmann::json& c : changes) {
            if (!c.is_object()) continue;
            line += " " + text_escape(field(c, "kind"));
            if (!field(c, "contact").empty()) line += " " + text_escape(field(c, "contact"));
            if (c.contains("count")) line += " (" + std::to_string(number(c, "count")) + ")";
        }
        std::printf("%s\n", line.c_str());
    }
    std::fflush(stdout);
}

// Follows the events, of every AOR or of `aor_text`, until SIGINT or SIGTERM (exit 0). From the
// stream: those after `since` ("" : only new ones; an ID: those after it, to resume). On a
// Cluster from the Pub/Sub channel (only new ones).
int cmd_watch(Redis& r, const std::string& aor_text, bool json, const std::string& since) {
    const std::string aor = aor_text.empty() ? std::string() : normalize_or_die(aor_text);
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_stop = 1; };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    const auto wanted = [&](const nlohmann::json& ev) {
        return aor.empty() || field(ev, "aor") == aor;
    };
    if (r->cluster()) {
        Redis::ok(r->subscribe_events());
        std::string msg;
        while (g_stop == 0) {
            Redis::ok(r->next_message(300, msg));
            if (msg.empty()) continue;
            const nlohmann::json ev = nlohmann::json::parse(msg, nullptr, false);
            if (ev.is_object() && wanted(ev)) print_event("", ev, json);
        }
        return 0;
    }
    std::string last = since.empty() ? "$" : since;
    if (!since.empty()) {
        bool trimmed = false;
        Redis::ok(r->events_trimmed_after(since, trimmed));
        // README "Registration events and counts": a consumer that resumes past the stream's
        // trimmed start has missed events.
        if (trimmed)
            std::fprintf(
                stderr,
                "%s: events after %s may have been trimmed from the stream: rescan the AORs you "
                "follow (sip-locctl show AOR)\n",
                kProgram.c_str(), since.c_str());
    }
    while (g_stop == 0) {
        Redis::ok(r->read_events(
            last, 300,
            [&](std::string_view id, const std::vector<std::pair<std::string, std::string>>& f) {
                nlohmann::json ev = nlohmann::json::object();
                for (const auto& kv : f) ev[kv.first] = kv.second;
                if (wanted(ev)) print_event(id, ev, json);
            }));
    }
    return 0;
}

int run(int argc, char** argv) {
    CLI::App cli{"sip-locctl: manage sip-redirect subscribers and bindings", kProgram};
    cli.require_subcommand(1);
    std::string redis = "redis://127.0.0.1:6379";
    std::string redis_password_file;
    cli.add_option(
           "--redis", redis,
           "Redis: redis://[user:password@]host:port[/db], sentinel://host:port,.../mastername "
           "or cluster://host:port,...")
        ->envname("SIPR_REDIS")
        ->capture_default_str();
    cli.add_option("--redis-password-file", redis_password_file,
                   "file holding the Redis password (overrides the URL's; a trailing newline "
                   "is ignored)")
        ->envname("SIPR_REDIS_PASSWORD_FILE");

    auto* user = cli.add_subcommand("user", "subscribers (digest credentials)");
    user->require_subcommand(1);
    std::string aor, password, realm, contact;
    auto* user_add = user->add_subcommand("add", "add or replace a subscriber");
    user_add->add_option("AOR", aor, "address-of-record")->required();
    user_add->add_option("--password", password, "the password (HA1 is stored, not the password)")
        ->required();
    user_add->add_option("--realm", realm, "digest realm (default: the AOR's domain)");
    std::vector<std::string> algorithms;
    user_add
        ->add_option("--algorithms", algorithms,
                     "digest algorithms this subscriber is challenged with, most preferred first, "
                     "e.g. SHA-256,MD5 (default: the registrar's --auth-algorithms)")
        ->delimiter(',');
    auto* user_del = user->add_subcommand("del", "remove a subscriber");
    user_del->add_option("AOR", aor, "address-of-record")->required();

    bool json = false;
    auto* show = cli.add_subcommand("show", "list an AOR's live bindings");
    show->add_option("AOR", aor, "address-of-record")->required();
    show->add_flag("--json", json, "print JSON");

    uint32_t expires = 86400 * 365;
    double q = 1.0;
    auto* bind = cli.add_subcommand("bind", "add a static binding");
    bind->add_option("AOR", aor, "address-of-record")->required();
    bind->add_option("CONTACT", contact, "contact URI")->required();
    bind->add_option("--expires", expires, "seconds (default: one year)")
        ->check(CLI::Range(1u, 315360000u));
    bind->add_option("--q", q, "q-value 0..1")->check(CLI::Range(0.0, 1.0));

    auto* unbind = cli.add_subcommand("unbind", "remove one binding, or all of an AOR");
    unbind->add_option("AOR", aor, "address-of-record")->required();
    unbind->add_option("CONTACT", contact, "contact URI (omit: all)");

    std::string target;
    uint32_t timeout_ms = 2000;
    auto* ping = cli.add_subcommand("ping", "send OPTIONS to a server; exit 0 on 200");
    ping->add_option("TARGET", target, "host:port")->required();
    ping->add_option("--timeout", timeout_ms, "ms")->capture_default_str();

    uint32_t reg_expires = 3600;
    std::string registrar_target = "127.0.0.1:5060";
    auto* reg =
        cli.add_subcommand("register", "REGISTER a contact through a registrar, as a UA would");
    reg->add_option("AOR", aor, "address-of-record")->required();
    reg->add_option("CONTACT", contact, "contact URI")->required();
    reg->add_option("--registrar", registrar_target, "host:port")->capture_default_str();
    reg->add_option("--expires", reg_expires, "seconds")->capture_default_str();
    reg->add_option("--timeout", timeout_ms, "ms")->capture_default_str();

    std::string redirect_target = "127.0.0.1:5070";
    auto* invite =
        cli.add_subcommand("invite", "send INVITE to a redirect server, print the answer");
    invite->add_option("URI", aor, "Request-URI, e.g. sip:alice@example.com")->required();
    invite->add_option("--target", redirect_target, "host:port")->capture_default_str();
    invite->add_option("--timeout", timeout_ms, "ms")->capture_default_str();

    std::string since;
    auto* watch = cli.add_subcommand(
        "watch", "print registration events live, of every AOR or of one, until Ctrl-C");
    watch->add_option("AOR", aor, "address-of-record (omit: every AOR)");
    watch->add_flag("--json", json, "one JSON object per event and line");
    watch->add_option("--since", since,
                      "resume after this stream ID (0: every event the stream still holds); "
                      "not on a cluster://");

    app::parse_or_exit(cli, argc, argv);

    if (*ping) return cmd_ping(target, timeout_ms);
    if (*reg) return cmd_register(aor, contact, registrar_target, reg_expires, timeout_ms);
    if (*invite) return cmd_invite(aor, redirect_target, timeout_ms);
    Redis r(redis, redis_password_file);
    if (*user_add) return cmd_user_add(r, aor, password, realm, algorithms);
    if (*user_del) return cmd_user_del(r, aor);
    if (*show) return cmd_show(r, aor, json);
    if (*bind) return cmd_bind(r, aor, contact, expires, q);
    if (*unbind) return cmd_unbind(r, aor, contact);
    if (*watch) return cmd_watch(r, aor, json, since);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    return sipr::app::guarded_main(kProgram.c_str(), run, argc, argv);
}
