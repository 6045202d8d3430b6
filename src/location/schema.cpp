#include "sipr/location/schema.h"

#include <cstring>

#include "auth_failure_lua.h"
#include "auth_fetch_lua.h"
#include "nonce_count_lua.h"
#include "register_lua.h"

namespace sipr::location {

std::string location_key(std::string_view aor) {
    std::string k;
    k.reserve(kLocationPrefix.size() + aor.size() + 2);
    k.append(kLocationPrefix).append("{").append(aor).append("}");
    return k;
}

std::string subscriber_key(std::string_view aor) {
    std::string k;
    k.reserve(kSubscriberPrefix.size() + aor.size() + 2);
    k.append(kSubscriberPrefix).append("{").append(aor).append("}");
    return k;
}

std::string auth_fail_key(std::string_view aor, std::string_view source) {
    std::string k;
    k.reserve(kAuthFailPrefix.size() + aor.size() + source.size() + 3);
    k.append(kAuthFailPrefix).append("{").append(aor).append("}:").append(source);
    return k;
}

std::string nonce_count_key(std::string_view aor, std::string_view nonce) {
    std::string k;
    k.reserve(kNonceCountPrefix.size() + aor.size() + nonce.size() + 3);
    k.append(kNonceCountPrefix).append("{").append(aor).append("}:").append(nonce);
    return k;
}

std::size_t write_location_key(std::string_view aor, char* out, std::size_t cap) noexcept {
    std::size_t n = kLocationPrefix.size() + aor.size() + 2;
    if (n > cap) return 0;
    std::memcpy(out, kLocationPrefix.data(), kLocationPrefix.size());
    out[kLocationPrefix.size()] = '{';
    std::memcpy(out + kLocationPrefix.size() + 1, aor.data(), aor.size());
    out[n - 1] = '}';
    return n;
}

std::string_view register_script() noexcept {
    return generated::kRegisterLua;
}
std::string_view auth_fetch_script() noexcept {
    return generated::kAuthFetchLua;
}
std::string_view auth_failure_script() noexcept {
    return generated::kAuthFailureLua;
}
std::string_view nonce_count_script() noexcept {
    return generated::kNonceCountLua;
}

void register_script_args(const RegisterChanges& ch, EventDelivery delivery,
                          std::vector<std::string>& out) {
    const bool stream = delivery == EventDelivery::Stream;
    out.reserve(out.size() + 10 + 3 * ch.contacts.size());
    out.emplace_back(stream ? "4" : "1");
    out.emplace_back(location_key(ch.aor));
    if (stream) {
        out.emplace_back(kEventsKey);
        out.emplace_back(kStatsKey);
        out.emplace_back(kExpiryKey);
    }
    out.emplace_back(std::to_string(ch.max_contacts));
    out.emplace_back(ch.evict_oldest ? "1" : "0");
    // register.lua's flags: 1 remove all, 2 a retransmission (nothing written), 4 by the
    // operator, 8 the expiry sweep, 16 events off.
    out.emplace_back(std::to_string((ch.remove_all ? 1 : 0) + (ch.retransmission ? 2 : 0) +
                                    (ch.by_operator ? 4 : 0) + (ch.sweep ? 8 : 0) +
                                    (delivery == EventDelivery::Off ? 16 : 0)));
    out.emplace_back(ch.call_id);
    out.emplace_back(std::to_string(ch.cseq));
    for (const ContactChange& c : ch.contacts) {
        out.emplace_back(c.key);
        out.emplace_back(std::to_string(c.expires_s));
        out.emplace_back(c.tail);
    }
}

}  // namespace sipr::location
