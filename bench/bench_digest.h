#pragma once
// sip-bench's side of digest authentication, in a header so the unit tests can check it: reading
// the challenge of a 401/407 (RFC 7616 §3.3) that the benchmark answers with credentials.
#include <string_view>

#include "sipr/base/ascii.h"

namespace sipr::bench {

// The parameters of one Digest challenge (WWW-Authenticate / Proxy-Authenticate, RFC 7616 §3.3)
// that an answer needs. Quoted values are returned without their quotes, escapes left as sent.
struct Challenge {
    std::string_view realm, nonce, opaque, algorithm, qop;
};

// Parses a challenge; false when it is not Digest, its parameter list is malformed, or it lacks
// a realm or a nonce.
inline bool parse_challenge(std::string_view v, Challenge& out) {
    out = Challenge{};
    auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    std::size_t i = 0;
    while (i < v.size() && blank(v[i])) ++i;
    std::size_t b = i;
    while (i < v.size() && sipr::base::is_token_char(v[i])) ++i;
    if (!sipr::base::iequals(v.substr(b, i - b), "Digest")) return false;
    for (;;) {
        while (i < v.size() && (blank(v[i]) || v[i] == ',')) ++i;
        if (i >= v.size()) break;
        b = i;
        while (i < v.size() && sipr::base::is_token_char(v[i])) ++i;
        std::string_view name = v.substr(b, i - b);
        while (i < v.size() && blank(v[i])) ++i;
        if (name.empty() || i >= v.size() || v[i] != '=') return false;
        ++i;
        while (i < v.size() && blank(v[i])) ++i;
        std::string_view value;
        if (i < v.size() && v[i] == '"') {
            b = ++i;
            while (i < v.size() && v[i] != '"') i += v[i] == '\\' ? 2 : 1;
            if (i >= v.size()) return false;
            value = v.substr(b, i - b);
            ++i;
        } else {
            b = i;
            while (i < v.size() && sipr::base::is_token_char(v[i])) ++i;
            value = v.substr(b, i - b);
        }
        if (sipr::base::iequals(name, "realm"))
            out.realm = value;
        else if (sipr::base::iequals(name, "nonce"))
            out.nonce = value;
        else if (sipr::base::iequals(name, "opaque"))
            out.opaque = value;
        else if (sipr::base::iequals(name, "algorithm"))
            out.algorithm = value;
        else if (sipr::base::iequals(name, "qop"))
            out.qop = value;
    }
    return !out.realm.empty() && !out.nonce.empty();
}

// True when a qop list ("auth", "auth,auth-int") offers auth.
inline bool offers_auth(std::string_view qop) {
    while (!qop.empty()) {
        std::size_t comma = qop.find(',');
        std::string_view item = qop.substr(0, comma);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        if (sipr::base::iequals(item, "auth")) return true;
        if (comma == std::string_view::npos) break;
        qop.remove_prefix(comma + 1);
    }
    return false;
}

}  // namespace sipr::bench
