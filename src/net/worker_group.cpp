#include "sipr/net/worker_group.h"

#include <condition_variable>
#include <deque>
#include <mutex>

namespace sipr::net {

struct WorkerGroup::Worker {
    std::size_t index = 0;
    uv_loop_t loop{};
    uv_async_t wake{};
    std::thread thread;
    std::mutex mu;
    std::deque<std::function<void()>> posted;
    bool stop_requested = false;
    bool stopped = false;  // on_stop already ran
    WorkerGroup* group = nullptr;
};

WorkerGroup::WorkerGroup() = default;
WorkerGroup::~WorkerGroup() {
    stop();
}

bool WorkerGroup::start(std::size_t n, SetupFn setup, StopFn on_stop) {
    on_stop_ = std::move(on_stop);
    // What the workers report their setup through. Shared, not on this frame: a worker touches
    // it (unlock, notify) after the increment that lets start() return, and a condition variable
    // destroyed under a notify_all() could hang that worker before its loop ever ran (seen once
    // in CI: one sip-redirectd worker never answered).
    struct Startup {
        std::mutex mu;
        std::condition_variable cv;
        std::size_t ready = 0;
        bool all_ok = true;
        SetupFn setup;
    };
    auto startup = std::make_shared<Startup>();
    startup->setup = std::move(setup);

    for (std::size_t i = 0; i < n; ++i) {
        auto w = std::make_unique<Worker>();
        w->index = i;
        w->group = this;
        workers_.push_back(std::move(w));
    }
    for (auto& wp : workers_) {
        Worker* w = wp.get();
        w->thread = std::thread([w, startup] {
            uv_loop_init(&w->loop);
            w->wake.data = w;
            uv_async_init(&w->loop, &w->wake, [](uv_async_t* a) {
                auto* self = static_cast<Worker*>(a->data);
                std::deque<std::function<void()>> jobs;
                bool stop_now = false;
                {
                    std::lock_guard lock(self->mu);
                    jobs.swap(self->posted);
                    stop_now = self->stop_requested && !self->stopped;
                    if (stop_now) self->stopped = true;
                }
                for (auto& job : jobs) job();
                if (stop_now) {
                    if (self->group->on_stop_) self->group->on_stop_(self->index);
                    uv_close(reinterpret_cast<uv_handle_t*>(&self->wake), nullptr);
                }
            });
            bool ok = startup->setup(w->index, &w->loop);
            {
                std::lock_guard lock(startup->mu);
                if (!ok) startup->all_ok = false;
                ++startup->ready;
                startup->cv.notify_all();
            }
            uv_run(&w->loop, UV_RUN_DEFAULT);
            // Close whatever is left (a handle the stop hook missed) so the loop can be freed.
            uv_walk(
                &w->loop,
                [](uv_handle_t* h, void*) {
                    if (!uv_is_closing(h)) uv_close(h, nullptr);
                },
                nullptr);
            uv_run(&w->loop, UV_RUN_DEFAULT);
            uv_loop_close(&w->loop);
        });
    }
    bool all_ok = false;
    {
        std::unique_lock lock(startup->mu);
        startup->cv.wait(lock, [&] { return startup->ready == workers_.size(); });
        all_ok = startup->all_ok;
    }
    if (!all_ok) {
        stop();
        return false;
    }
    return true;
}

void WorkerGroup::stop() {
    for (auto& w : workers_) {
        {
            std::lock_guard lock(w->mu);
            if (w->stop_requested) continue;
            w->stop_requested = true;
        }
        uv_async_send(&w->wake);
    }
    for (auto& w : workers_)
        if (w->thread.joinable()) w->thread.join();
}

void WorkerGroup::post(std::size_t index, std::function<void()> fn) {
    if (index >= workers_.size()) return;
    Worker* w = workers_[index].get();
    {
        std::lock_guard lock(w->mu);
        if (w->stopped) return;
        w->posted.push_back(std::move(fn));
    }
    uv_async_send(&w->wake);
}

}  // namespace sipr::net
