#include "sipr/sip/method.h"

#include <array>
#include <utility>

namespace sipr::sip {
namespace {

constexpr std::array<std::pair<std::string_view, Method>, 14> kMethods{{
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
