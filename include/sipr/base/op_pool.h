#pragma once
// Records of operations in flight, reused: acquire() hands out a free one and allocates only when
// every record is in use, so a warm pool allocates nothing; release() takes one back and never
// allocates. The pool owns the records (their addresses are stable until it is destroyed) and does
// not reset them: the caller sets every field it reads. Allocation failure terminates (the
// project's policy, src/README.md): acquire() is noexcept.
#include <cstddef>
#include <memory>
#include <vector>

namespace sipr::base {

template <typename T>
class OpPool {
  public:
    [[nodiscard]] T* acquire() noexcept {
        if (!free_.empty()) {
            T* t = free_.back();
            free_.pop_back();
            return t;
        }
        all_.push_back(std::make_unique<T>());
        free_.reserve(all_.size());  // so release() never allocates
        return all_.back().get();
    }
    // `t` came from acquire() of this pool and is not in use any more.
    void release(T* t) noexcept { free_.push_back(t); }

    [[nodiscard]] std::size_t size() const noexcept { return all_.size(); }
    [[nodiscard]] std::size_t in_use() const noexcept { return all_.size() - free_.size(); }

  private:
    std::vector<std::unique_ptr<T>> all_;
    std::vector<T*> free_;
};

}  // namespace sipr::base
