#pragma once
// N worker threads, each running its own uv_loop (DESIGN §7: one loop, one socket, one Redis
// connection per worker; no shared state between them).
#include <uv.h>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace sipr::net {

class WorkerGroup {
  public:
    // Runs on the worker's thread before its loop starts. Returns false to report a start-up
    // failure (the group then stops).
    using SetupFn = std::function<bool(std::size_t index, uv_loop_t* loop)>;
    // Runs on the worker's thread when stop() is called: close every handle so the loop can end.
    using StopFn = std::function<void(std::size_t index)>;

    WorkerGroup();
    ~WorkerGroup();
    WorkerGroup(const WorkerGroup&) = delete;
    WorkerGroup& operator=(const WorkerGroup&) = delete;

    // Starts `n` workers and waits until every setup returned. Returns false when any setup
    // failed; the workers that started are then stopped and joined.
    [[nodiscard]] bool start(std::size_t n, SetupFn setup, StopFn on_stop);

    // Asks every worker to stop (thread-safe, idempotent) and joins them.
    void stop();

    // Runs `fn` on worker `index`'s loop thread (thread-safe). Used for drain and tests.
    void post(std::size_t index, std::function<void()> fn);

    [[nodiscard]] std::size_t size() const noexcept { return workers_.size(); }

  private:
    struct Worker;
    std::vector<std::unique_ptr<Worker>> workers_;
    StopFn on_stop_;
};

}  // namespace sipr::net
