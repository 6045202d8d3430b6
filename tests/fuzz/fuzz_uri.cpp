// libFuzzer target: the URI layer on arbitrary text. parse_uri, unescape of every part into
// buffers of several sizes (exact heap blocks, so ASan sees a one-byte over-write), and the
// parameter iterator and look-ups over the parameters - and over the raw text, since they take any
// string.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>

#include "fuzz_check.h"
#include "sipr/sip/uri.h"

namespace {

using sipr::fuzz::inside;
using namespace sipr::sip;

// Decodes `in` into a heap block of exactly `cap` bytes and checks unescape's contract.
void unescape_into(std::string_view in, std::size_t cap) {
    std::unique_ptr<char[]> block(cap != 0 ? new char[cap] : nullptr);
    const std::ptrdiff_t n = unescape(in, std::span<char>(block.get(), cap));
    SIPR_FUZZ_CHECK(n >= -1);
    if (n >= 0) {
        SIPR_FUZZ_CHECK(static_cast<std::size_t>(n) <= cap);
        SIPR_FUZZ_CHECK(static_cast<std::size_t>(n) <= in.size());  // decoding only shrinks
    }
}

void unescape_all_sizes(std::string_view in) {
    for (std::size_t cap :
         {std::size_t{0}, std::size_t{1}, std::size_t{7}, in.size() / 2, in.size()}) {
        unescape_into(in, cap);
    }
}

// Walks a parameter list: every name and value is a view into it, and the walk ends.
void walk_params(std::string_view params) {
    ParamIterator it(params);
    std::string_view name, value;
    bool has_value = false;
    std::size_t steps = 0;
    while (it.next(name, value, has_value)) {
        SIPR_FUZZ_CHECK(inside(name, params));
        SIPR_FUZZ_CHECK(inside(value, params));
        if (!has_value) SIPR_FUZZ_CHECK(value.empty());
        // Each step consumes at least one byte, so more steps than bytes means it is stuck.
        ++steps;
        SIPR_FUZZ_CHECK(steps <= params.size() + 1);
    }
    for (std::string_view key : {"transport", "user", "lr", "maddr", "branch", "q"}) {
        std::string_view v;
        if (find_param(params, key, v)) SIPR_FUZZ_CHECK(inside(v, params));
        (void)has_param(params, key);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const std::string_view text = sipr::fuzz::as_text(data, size);

    Uri uri;
    const UriStatus status = parse_uri(text, uri);
    if (status == UriStatus::Ok) {
        SIPR_FUZZ_CHECK(uri.scheme != Scheme::Other);
        for (std::string_view part :
             {uri.scheme_text, uri.user, uri.password, uri.host, uri.params, uri.headers}) {
            SIPR_FUZZ_CHECK(inside(part, text));
        }
        if (!uri.has_port) SIPR_FUZZ_CHECK(uri.port == 0);
        if (uri.host_is_ipv6) {
            SIPR_FUZZ_CHECK(uri.host.size() >= 2 && uri.host.front() == '[' &&
                            uri.host.back() == ']');
        }
        unescape_all_sizes(uri.user);
        unescape_all_sizes(uri.password);
        unescape_all_sizes(uri.host);
        walk_params(uri.params);
    } else if (status == UriStatus::UnsupportedScheme) {
        SIPR_FUZZ_CHECK(!uri.scheme_text.empty() && inside(uri.scheme_text, text));
    }

    unescape_all_sizes(text);
    walk_params(text);
    return 0;
}
