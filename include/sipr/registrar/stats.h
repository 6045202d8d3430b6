#pragma once
// What one sip-registrard worker's Registrar and DigestAuthenticator count beyond its messages
// (sip::MessageStats): written only by that worker, read by the metrics layer at scrape time.
#include <array>
#include <cstddef>
#include <cstdint>

#include "sipr/base/stats.h"

namespace sipr::registrar {

enum class RegistrationResult : uint8_t {
    Ok,          // 200
    Removed,     // 200 after removing bindings only
    Fetch,       // 200 to a REGISTER without Contact
    Refused,     // 4xx
    Stale,       // 500 (CSeq order)
    StoreError,  // 503
    kCount,
};
inline constexpr std::array<const char*, static_cast<std::size_t>(RegistrationResult::kCount)>
    kRegistrationResultNames{"ok", "removed", "fetch", "refused", "stale", "store_error"};

// Digest algorithms, as sipr_auth_successes_total labels them (index = DigestAlgorithm).
inline constexpr std::array<const char*, 2> kAuthAlgorithmNames{"MD5", "SHA-256"};

struct RegistrarStats {
    std::array<base::Counter, static_cast<std::size_t>(RegistrationResult::kCount)> registrations{};
    base::Counter auth_failures;
    std::array<base::Counter, kAuthAlgorithmNames.size()> auth_successes{};  // by algorithm
    base::Counter contacts_cut;  // contacts left out of a 200 to fit the datagram
    std::array<base::Counter, static_cast<std::size_t>(base::RedisErrorKind::kCount)>
        redis_errors{};

    void registration(RegistrationResult r) noexcept {
        registrations[static_cast<std::size_t>(r)].inc();
    }
    void redis_error(base::RedisErrorKind k) noexcept {
        redis_errors[static_cast<std::size_t>(k)].inc();
    }
};

}  // namespace sipr::registrar
