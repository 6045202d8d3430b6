#include "sipr/location/schema.h"

#include <cstring>

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

std::size_t write_location_key(std::string_view aor, char* out, std::size_t cap) noexcept {
    std::size_t n = kLocationPrefix.size() + aor.size() + 2;
    if (n > cap) return 0;
    std::memcpy(out, kLocationPrefix.data(), kLocationPrefix.size());
    out[kLocationPrefix.size()] = '{';
    std::memcpy(out + kLocationPrefix.size() + 1, aor.data(), aor.size());
    out[n - 1] = '}';
    return n;
}

std::string_view register_script() noexcept { return generated::kRegisterLua; }

}  // namespace sipr::location
