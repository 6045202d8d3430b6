#pragma once
// Prometheus metrics of DESIGN §9 on GET /metrics (prometheus-cpp's pull Exposer). Workers count
// into their own base::ServiceStats; a scrape folds them on the exposer's thread and never blocks
// a worker.
#include <memory>
#include <string>
#include <vector>

#include "sipr/base/stats.h"

namespace prometheus {
class Exposer;
}

namespace sipr::metrics {

class Exporter {
  public:
    // Serves on `listen` ("127.0.0.1:9060", "[::1]:9060"). Throws std::runtime_error when it
    // cannot bind (start-up only; the app turns it into one line and an exit).
    Exporter(const std::string& listen, const std::string& program,
             std::vector<const base::ServiceStats*> workers);
    ~Exporter();
    Exporter(const Exporter&) = delete;
    Exporter& operator=(const Exporter&) = delete;

    // The bound port (useful when `listen` asked for port 0).
    [[nodiscard]] uint16_t port() const;

  private:
    class Collector;
    std::shared_ptr<Collector> collector_;
    std::unique_ptr<prometheus::Exposer> exposer_;
    std::string listen_;
};

// The text a scrape returns, without HTTP (for tests and sip-locctl).
[[nodiscard]] std::string render(const std::string& program,
                                 const std::vector<const base::ServiceStats*>& workers);

}  // namespace sipr::metrics
