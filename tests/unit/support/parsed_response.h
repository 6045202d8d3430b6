#pragma once
// A SIP response written by a service under test, parsed back with the product's own parser, with
// its Contacts: shared by the redirect and registrar unit tests.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sipr/sip/headers.h"
#include "sipr/sip/message.h"

namespace sipr::test {

struct ParsedResponse {
    std::string text;
    std::unique_ptr<sip::Message> msg = std::make_unique<sip::Message>();
    sip::ParseStatus status = sip::ParseStatus::Malformed;
    std::vector<sip::Contact> contacts;  // one per Contact header; an unparsable one is empty
    std::size_t bad_contacts = 0;        // Contact headers parse_contact refused

    [[nodiscard]] uint16_t code() const { return msg->status_code; }
    [[nodiscard]] std::string header(std::string_view name) const {
        const sip::Header* h = msg->find(name);
        return h == nullptr ? std::string() : std::string(h->value);
    }
    // Every value of the header `id`.
    [[nodiscard]] std::vector<std::string> headers(sip::HeaderId id) const {
        std::vector<std::string> v;
        for (std::size_t i = 0; i < msg->header_count; ++i)
            if (msg->headers[i].id == id) v.emplace_back(msg->headers[i].value);
        return v;
    }
    // Every value of the header `name` (a known header by its id, any other by its name).
    [[nodiscard]] std::vector<std::string> headers(std::string_view name) const {
        sip::HeaderId id = sip::header_id(name);
        if (id != sip::HeaderId::Other) return headers(id);
        std::vector<std::string> v;
        for (std::size_t i = 0; i < msg->header_count; ++i)
            if (msg->headers[i].name == name) v.emplace_back(msg->headers[i].value);
        return v;
    }
    [[nodiscard]] std::vector<std::string> contact_uris() const {
        std::vector<std::string> v;
        for (const sip::Contact& c : contacts) v.emplace_back(c.addr.uri_text);
        return v;
    }
    // The Contact whose URI is `uri`, or nullptr.
    [[nodiscard]] const sip::Contact* contact(std::string_view uri) const {
        for (const sip::Contact& c : contacts)
            if (c.addr.uri_text == uri) return &c;
        return nullptr;
    }
};

inline std::unique_ptr<ParsedResponse> parse_response(std::string_view text) {
    auto p = std::make_unique<ParsedResponse>();
    p->text.assign(text);
    p->status = sip::parse_message(p->text, *p->msg);
    if (p->status != sip::ParseStatus::Ok) return p;
    for (std::size_t i = 0; i < p->msg->header_count; ++i) {
        if (p->msg->headers[i].id != sip::HeaderId::Contact) continue;
        sip::Contact c;
        if (!sip::parse_contact(p->msg->headers[i].value, c)) {
            ++p->bad_contacts;
            c = sip::Contact{};  // fails any URI check
        }
        p->contacts.push_back(c);
    }
    return p;
}

}  // namespace sipr::test
