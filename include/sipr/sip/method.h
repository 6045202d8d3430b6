#pragma once
// SIP request methods. Unknown methods are legal (RFC 3261 §8.3) and keep their text.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sipr::sip {

enum class Method : uint8_t {
    Unknown,
    Invite,
    Ack,
    Options,
    Bye,
    Cancel,
    Register,
    Prack,
    Subscribe,
    Notify,
    Publish,
    Info,
    Refer,
    Message,
    Update,
    kCount,
};

// The number of Method values: arrays indexed by Method (the request counters) have this size.
inline constexpr std::size_t kMethodCount = static_cast<std::size_t>(Method::kCount);

// Maps a method token to its enum (case-sensitive, RFC 3261 §7.1); Unknown for anything else.
[[nodiscard]] Method method_from_text(std::string_view token) noexcept;

// The canonical text of a known method; "" for Unknown.
[[nodiscard]] std::string_view method_text(Method m) noexcept;

}  // namespace sipr::sip
