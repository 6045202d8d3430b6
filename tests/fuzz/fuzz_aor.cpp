// libFuzzer target: AOR normalisation of arbitrary text, with and without a default domain, into
// output buffers of several sizes. Each buffer is a heap block of exactly that size, so ASan sees
// any write past it; the results must agree with a buffer large enough for any answer.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>

#include "fuzz_check.h"
#include "sipr/sip/aor.h"
#include "sipr/sip/uri.h"

namespace {

using namespace sipr::sip;

struct Result {
    AorStatus status = AorStatus::Ok;
    std::unique_ptr<char[]> block;
    std::size_t len = 0;
    [[nodiscard]] std::string_view text() const { return {block.get(), len}; }
};

Result normalize_text(std::string_view text, std::string_view domain, std::size_t cap) {
    Result r;
    r.block.reset(cap != 0 ? new char[cap] : nullptr);
    r.status = normalize_aor(text, domain, std::span<char>(r.block.get(), cap), r.len);
    if (r.status == AorStatus::Ok) SIPR_FUZZ_CHECK(r.len <= cap);
    return r;
}

void check_domain(std::string_view text, std::string_view domain) {
    // An AOR is never longer than "sip:" + the input + "@" + the default domain (a tel: number
    // mapped into the domain); a block that size can hold any answer.
    const std::size_t big = text.size() + domain.size() + 16;
    const Result ref = normalize_text(text, domain, big);
    if (ref.status == AorStatus::Ok) {
        const std::string_view aor = ref.text();
        // "<scheme>:<user>@<host>", scheme lower-cased, tel: mapped to sip: (aor.h).
        SIPR_FUZZ_CHECK(aor.starts_with("sip:") || aor.starts_with("sips:"));
        SIPR_FUZZ_CHECK(aor.find('@') != std::string_view::npos);
    }

    for (std::size_t cap : {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{16},
                            std::size_t{64}, kMaxAorLength}) {
        const Result r = normalize_text(text, domain, cap);
        if (ref.status == AorStatus::Ok) {
            if (ref.len <= cap) {
                SIPR_FUZZ_CHECK(r.status == AorStatus::Ok);
                SIPR_FUZZ_CHECK(r.text() == ref.text());
            } else {
                SIPR_FUZZ_CHECK(r.status == AorStatus::TooLong);
            }
        } else {
            // A small buffer may be found too small before the fault is.
            SIPR_FUZZ_CHECK(r.status == ref.status || r.status == AorStatus::TooLong);
        }
    }

    // The text overload is parse_uri + the Uri overload.
    Uri uri;
    if (parse_uri(text, uri) == UriStatus::Ok) {
        std::unique_ptr<char[]> block(new char[big]);
        std::size_t len = 0;
        const AorStatus s = normalize_aor(uri, domain, std::span<char>(block.get(), big), len);
        SIPR_FUZZ_CHECK(s == ref.status);
        if (s == AorStatus::Ok) {
            SIPR_FUZZ_CHECK(std::string_view(block.get(), len) == ref.text());
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const std::string_view text = sipr::fuzz::as_text(data, size);
    check_domain(text, "example.com");
    check_domain(text, "");  // tel: URIs then have nowhere to go: NoDomain
    return 0;
}
