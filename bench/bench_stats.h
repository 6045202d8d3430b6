#pragma once
// sip-bench's statistics, in a header so the unit tests can check them: the latency histogram,
// the AOR picker, and how the load is split over sending threads and their sockets.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace sipr::bench {

// Log-linear latency histogram in µs: exact below 128, then 64 buckets per power of two (a bucket
// spans at most 1/64 of its value), up to 2^40 µs.
class Histogram {
  public:
    static constexpr int kSub = 64;
    static constexpr std::size_t kBuckets = 128 + 34 * kSub;

    void record(int64_t us) noexcept {
        auto v = static_cast<uint64_t>(std::max<int64_t>(us, 0));
        ++counts_[index(v)];
        ++total_;
        max_ = std::max(max_, v);
        sum_ += v;
    }
    void merge(const Histogram& o) noexcept {
        for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
        total_ += o.total_;
        max_ = std::max(max_, o.max_);
        sum_ += o.sum_;
    }
    [[nodiscard]] uint64_t total() const noexcept { return total_; }
    [[nodiscard]] uint64_t max() const noexcept { return max_; }
    [[nodiscard]] double mean() const noexcept {
        return total_ == 0 ? 0 : static_cast<double>(sum_) / static_cast<double>(total_);
    }
    // The smallest bucket edge at or below which p percent of the samples lie.
    [[nodiscard]] uint64_t percentile(double p) const noexcept {
        if (total_ == 0) return 0;
        auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
        rank = std::clamp<uint64_t>(rank, 1, total_);
        uint64_t seen = 0;
        for (std::size_t i = 0; i < kBuckets; ++i) {
            seen += counts_[i];
            if (seen >= rank) return std::min(upper(i), max_);
        }
        return max_;
    }
    static std::size_t index(uint64_t v) noexcept {
        if (v < 128) return static_cast<std::size_t>(v);
        int e = 63 - __builtin_clzll(v) - 6;  // v >> e is in [64, 128)
        std::size_t i = 128 + static_cast<std::size_t>(e - 1) * kSub + ((v >> e) - kSub);
        return std::min(i, kBuckets - 1);
    }
    // The largest value that falls into bucket i.
    static uint64_t upper(std::size_t i) noexcept {
        if (i < 128) return i;
        std::size_t e = (i - 128) / kSub + 1;
        uint64_t m = (i - 128) % kSub + kSub;
        return ((m + 1) << e) - 1;
    }

  private:
    std::array<uint64_t, kBuckets> counts_{};
    uint64_t total_ = 0, max_ = 0, sum_ = 0;
};

// Picks AOR indices: uniform, or Zipf with exponent s over ranks 0..n-1 (inverse CDF by search).
class AorPicker {
  public:
    AorPicker(uint32_t n, double s, uint64_t seed) : n_(n), rng_(seed) {
        if (s <= 0) return;
        cdf_.resize(n);
        double sum = 0;
        for (uint32_t i = 0; i < n; ++i)
            cdf_[i] = (sum += 1.0 / std::pow(static_cast<double>(i + 1), s));
        for (double& c : cdf_) c /= sum;
    }
    uint32_t next() noexcept {
        if (cdf_.empty()) return static_cast<uint32_t>(rng_() % n_);
        double u = std::uniform_real_distribution<double>(0, 1)(rng_);
        auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
        return static_cast<uint32_t>(std::min<std::ptrdiff_t>(it - cdf_.begin(), n_ - 1));
    }

  private:
    uint32_t n_;
    std::mt19937_64 rng_;
    std::vector<double> cdf_;
};

// The part of `total` that part `i` (0-based, < `parts`) gets when `total` is split over `parts`
// as evenly as possible, the first parts taking one more each until the remainder is used up.
// The parts of 0..parts-1 add up to `total`; any two differ by at most one. parts == 0 gives 0.
constexpr uint64_t share(uint64_t total, uint64_t parts, uint64_t i) noexcept {
    if (parts == 0 || i >= parts) return 0;
    return total / parts + (i < total % parts ? 1 : 0);
}

// Hands out socket indices 0..n-1 in turn: each batch of requests leaves from the next socket,
// so over a run every socket sends within one batch of the same number of batches.
class SocketRing {
  public:
    explicit SocketRing(std::size_t n) noexcept : n_(n == 0 ? 1 : n) {}
    std::size_t next() noexcept {
        std::size_t i = cursor_;
        cursor_ = cursor_ + 1 == n_ ? 0 : cursor_ + 1;
        return i;
    }
    [[nodiscard]] std::size_t size() const noexcept { return n_; }

  private:
    std::size_t n_;
    std::size_t cursor_ = 0;
};

}  // namespace sipr::bench
