#pragma once
// Test support: the message fixtures of tests/data (SIPR_TEST_DATA_DIR), loaded whole.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace sipr::test {

inline std::filesystem::path data_dir() {
    return std::filesystem::path(SIPR_TEST_DATA_DIR);
}

struct Fixture {
    std::string name;   // file name, e.g. "valid_invite_sdp.sip"
    std::string bytes;  // the whole file
};

// Every tests/data/*.sip, sorted by name.
inline std::vector<Fixture> load_fixtures() {
    std::vector<Fixture> out;
    for (const auto& entry : std::filesystem::directory_iterator(data_dir())) {
        if (!entry.is_regular_file() || entry.path().extension() != ".sip") continue;
        std::ifstream in(entry.path(), std::ios::binary);
        out.push_back({entry.path().filename().string(),
                       {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()}});
    }
    std::sort(out.begin(), out.end(),
              [](const Fixture& a, const Fixture& b) { return a.name < b.name; });
    return out;
}

}  // namespace sipr::test
