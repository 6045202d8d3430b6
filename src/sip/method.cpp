#include "sipr/sip/method.h"

#include <array>
#include <utility>

namespace sipr::sip {
namespace {

// Every Method but Unknown, each once (checked below), so method_text() names every counter of
// MessageStats::requests but the first.
constexpr std::array<std::pair<std::string_view, Method>, kMethodCount - 1> kMethods{{
    {"INVITE", Method::Invite},
    {"ACK", Method::Ack},
    {"OPTIONS", Method::Options},
    {"BYE", Method::Bye},
    {"CANCEL", Method::Cancel},
    {"REGISTER", Method::Register},
    {"PRACK", Method::Prack},
    {"SUBSCRIBE", Method::Subscribe},
    {"NOTIFY", Method::Notify},
    {"PUBLISH", Method::Publish},
    {"INFO", Method::Info},
    {"REFER", Method::Refer},
    {"MESSAGE", Method::Message},
    {"UPDATE", Method::Update},
}};

constexpr bool names_every_method() {
    for (std::size_t i = 1; i < kMethodCount; ++i) {
        bool found = false;
        for (const auto& entry : kMethods) found = found || entry.second == static_cast<Method>(i);
        if (!found) return false;
    }
    return true;
}
static_assert(names_every_method(), "kMethods must name every Method but Unknown");

}  // namespace

Method method_from_text(std::string_view token) noexcept {
    // RFC 3261 §7.1: the method is case-sensitive.
    for (const auto& [text, m] : kMethods)
        if (text == token) return m;
    return Method::Unknown;
}

std::string_view method_text(Method m) noexcept {
    for (const auto& [text, known] : kMethods)
        if (known == m) return text;
    return {};
}

}  // namespace sipr::sip
