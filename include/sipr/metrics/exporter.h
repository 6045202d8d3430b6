#pragma once
// Prometheus metrics of DESIGN §9 on GET /metrics (prometheus-cpp's pull Exposer). Workers count
// into their own WorkerStats; a scrape folds them on the exposer's thread and never blocks a
// worker.
#include <memory>
#include <string>
#include <vector>

#include "sipr/base/stats.h"
#include "sipr/location/stats.h"
#include "sipr/net/stats.h"
#include "sipr/redirect/stats.h"
#include "sipr/registrar/stats.h"
#include "sipr/sip/stats.h"

namespace prometheus {
class Exposer;
}

namespace sipr::metrics {

// One worker's counters, each part declared by the layer that counts it. A daemon runs one
// service: the other's part stays at zero and is exported as zeros, so both daemons export the
// same series.
struct WorkerStats {
    sip::MessageStats messages;
    redirect::RedirectStats redirect;
    registrar::RegistrarStats registrar;
    location::StoreStats store;
    base::Gauge draining;     // 1 once this worker is draining (SIGTERM: the health probe says 503)
    net::StreamStats stream;  // TCP connections (sipr_connections_*)
};

class Exporter {
  public:
    // Serves on `listen` ("127.0.0.1:9060", "[::1]:9060"). Throws std::runtime_error when it
    // cannot bind (start-up only; the app turns it into one line and an exit).
    Exporter(const std::string& listen, const std::string& program,
             std::vector<const WorkerStats*> workers);
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
                                 const std::vector<const WorkerStats*>& workers);

}  // namespace sipr::metrics
