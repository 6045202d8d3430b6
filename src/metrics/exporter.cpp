#include "sipr/metrics/exporter.h"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "sipr/sip/method.h"

namespace sipr::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Codes always exported (as 0 until seen) so dashboards and alerts have a series from the start.
constexpr std::array<uint16_t, 8> kAlwaysCodes{200, 302, 400, 403, 404, 405, 483, 503};

MetricFamily family(std::string name, std::string help, MetricType type) {
    MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = type;
    return f;
}

ClientMetric counter(double v, std::vector<ClientMetric::Label> labels = {}) {
    ClientMetric m;
    m.label = std::move(labels);
    m.counter.value = v;
    return m;
}

ClientMetric gauge(double v, std::vector<ClientMetric::Label> labels = {}) {
    ClientMetric m;
    m.label = std::move(labels);
    m.gauge.value = v;
    return m;
}

std::string method_label(std::size_t i) {
    std::string_view t = sip::method_text(static_cast<sip::Method>(i));
    return t.empty() ? "other" : std::string(t);
}

std::vector<MetricFamily> collect(const std::string& program,
                                  const std::vector<const WorkerStats*>& workers) {
    auto sum = [&](auto getter) {
        uint64_t s = 0;
        for (const WorkerStats* w : workers) s += getter(*w);
        return s;
    };
    std::vector<MetricFamily> out;

    auto requests =
        family("sipr_requests_total", "SIP requests received, by method", MetricType::Counter);
    for (std::size_t i = 0; i < sip::kMethodCount; ++i) {
        uint64_t v = sum([i](const WorkerStats& s) { return s.messages.requests[i].get(); });
        requests.metric.push_back(counter(static_cast<double>(v), {{"method", method_label(i)}}));
    }
    out.push_back(std::move(requests));

    auto responses =
        family("sipr_responses_total", "SIP responses sent, by status code", MetricType::Counter);
    for (std::size_t code = 100; code < sip::MessageStats::kCodes; ++code) {
        uint64_t v = sum([code](const WorkerStats& s) { return s.messages.responses[code].get(); });
        bool always = false;
        for (uint16_t c : kAlwaysCodes) always = always || c == code;
        if (v == 0 && !always) continue;
        responses.metric.push_back(
            counter(static_cast<double>(v), {{"code", std::to_string(code)}}));
    }
    out.push_back(std::move(responses));

    auto dropped = family("sipr_dropped_total", "Datagrams dropped without an answer, by reason",
                          MetricType::Counter);
    for (std::size_t i = 0; i < base::kDropReasonNames.size(); ++i) {
        uint64_t v = sum([i](const WorkerStats& s) { return s.messages.dropped[i].get(); });
        dropped.metric.push_back(
            counter(static_cast<double>(v), {{"reason", base::kDropReasonNames[i]}}));
    }
    out.push_back(std::move(dropped));

    auto regs =
        family("sipr_registrations_total", "REGISTER outcomes, by result", MetricType::Counter);
    for (std::size_t i = 0; i < registrar::kRegistrationResultNames.size(); ++i) {
        uint64_t v = sum([i](const WorkerStats& s) { return s.registrar.registrations[i].get(); });
        regs.metric.push_back(
            counter(static_cast<double>(v), {{"result", registrar::kRegistrationResultNames[i]}}));
    }
    out.push_back(std::move(regs));

    auto redis_errors =
        family("sipr_redis_errors_total", "Redis errors, by kind", MetricType::Counter);
    for (std::size_t i = 0; i < base::kRedisErrorKindNames.size(); ++i) {
        uint64_t v = sum([i](const WorkerStats& s) {
            return s.redirect.redis_errors[i].get() + s.registrar.redis_errors[i].get();
        });
        redis_errors.metric.push_back(
            counter(static_cast<double>(v), {{"kind", base::kRedisErrorKindNames[i]}}));
    }
    out.push_back(std::move(redis_errors));

    auto redirects = family("sipr_redis_redirects_total",
                            "Redis Cluster redirections followed, by kind (moved: the slot moved "
                            "for good; ask: one key during a slot migration)",
                            MetricType::Counter);
    redirects.metric.push_back(counter(
        static_cast<double>(sum([](const WorkerStats& s) { return s.store.redis_moved.get(); })),
        {{"kind", "moved"}}));
    redirects.metric.push_back(counter(
        static_cast<double>(sum([](const WorkerStats& s) { return s.store.redis_ask.get(); })),
        {{"kind", "ask"}}));
    out.push_back(std::move(redirects));

    // Not folded: one series per worker shows how the sockets share the load (one source
    // socket, such as a load balancer's, must reach every worker: DESIGN §7, --spread).
    auto per_worker =
        family("sipr_worker_datagrams_total",
               "Datagrams received, by worker (before any source check)", MetricType::Counter);
    for (std::size_t i = 0; i < workers.size(); ++i)
        per_worker.metric.push_back(
            counter(static_cast<double>(workers[i]->messages.datagrams.get()),
                    {{"worker", std::to_string(i)}}));
    out.push_back(std::move(per_worker));

    auto single = [&](const char* name, const char* help, auto getter) {
        auto f = family(name, help, MetricType::Counter);
        f.metric.push_back(counter(static_cast<double>(sum(getter))));
        out.push_back(std::move(f));
    };
    auto auth_ok =
        family("sipr_auth_successes_total", "Digest authentications that succeeded, by algorithm",
               MetricType::Counter);
    for (std::size_t i = 0; i < registrar::kAuthAlgorithmNames.size(); ++i) {
        uint64_t v = sum([i](const WorkerStats& s) { return s.registrar.auth_successes[i].get(); });
        auth_ok.metric.push_back(
            counter(static_cast<double>(v), {{"algorithm", registrar::kAuthAlgorithmNames[i]}}));
    }
    out.push_back(std::move(auth_ok));

    single("sipr_auth_failures_total", "Failed digest authentications",
           [](const WorkerStats& s) { return s.registrar.auth_failures.get(); });
    single("sipr_contacts_cut_total", "Contacts left out of a 302 to fit one datagram",
           [](const WorkerStats& s) {
               return s.redirect.contacts_cut.get() + s.registrar.contacts_cut.get();
           });
    single("sipr_garbage_bindings_total", "Stored bindings that failed to unpack (skipped)",
           [](const WorkerStats& s) { return s.redirect.garbage_bindings.get(); });
    single("sipr_cache_hits_total", "Near-cache hits",
           [](const WorkerStats& s) { return s.store.cache_hits.get(); });
    single("sipr_cache_misses_total", "Near-cache misses",
           [](const WorkerStats& s) { return s.store.cache_misses.get(); });
    single("sipr_cache_invalidations_total", "Near-cache invalidations received",
           [](const WorkerStats& s) { return s.store.cache_invalidations.get(); });
    single("sipr_cache_flushes_total",
           "Near-cache flushes (tracking lost or regained on a worker, FLUSHALL)",
           [](const WorkerStats& s) { return s.store.cache_flushes.get(); });

    auto inflight = family("sipr_inflight_lookups", "Redis look-ups in flight", MetricType::Gauge);
    int64_t in = 0;
    for (const WorkerStats* w : workers) in += w->redirect.inflight_lookups.get();
    inflight.metric.push_back(gauge(static_cast<double>(in)));
    out.push_back(std::move(inflight));

    auto entries = family("sipr_cache_entries", "AORs held in the near-caches of all workers",
                          MetricType::Gauge);
    int64_t held = 0;
    for (const WorkerStats* w : workers) held += w->store.cache_entries.get();
    entries.metric.push_back(gauge(static_cast<double>(held)));
    out.push_back(std::move(entries));

    // The registrar's counts of what Redis holds (register.lua keeps them, its first worker reads
    // them every second). Both daemons export them, as every series; 0 where they are not read
    // (sip-redirectd, a Redis Cluster) and until the first read.
    int64_t aors = 0, bindings = 0;
    for (const WorkerStats* w : workers)
        if (w->store.registered_known.get() == 1) {
            aors = w->store.registered_aors.get();
            bindings = w->store.registered_bindings.get();
        }
    auto aors_family = family("sipr_registered_aors",
                              "AORs with at least one binding stored in Redis, as sip-registrard "
                              "last read them (expired bindings count until the sweep prunes them)",
                              MetricType::Gauge);
    aors_family.metric.push_back(gauge(static_cast<double>(aors)));
    out.push_back(std::move(aors_family));
    auto bindings_family =
        family("sipr_registered_bindings",
               "Bindings stored in Redis, as sip-registrard last read them (expired ones count "
               "until the sweep prunes them)",
               MetricType::Gauge);
    bindings_family.metric.push_back(gauge(static_cast<double>(bindings)));
    out.push_back(std::move(bindings_family));

    auto up = family("sipr_redis_up", "1 when every worker's Redis connection is ready, else 0",
                     MetricType::Gauge);
    bool all_up = !workers.empty();
    for (const WorkerStats* w : workers) all_up = all_up && w->store.redis_up.get() == 1;
    up.metric.push_back(gauge(all_up ? 1.0 : 0.0));
    out.push_back(std::move(up));

    auto draining = family("sipr_draining",
                           "1 while the instance drains before it stops (SIGTERM: the health "
                           "probe answers 503, requests are still answered), else 0",
                           MetricType::Gauge);
    bool any_draining = false;
    for (const WorkerStats* w : workers) any_draining = any_draining || w->draining.get() == 1;
    draining.metric.push_back(gauge(any_draining ? 1.0 : 0.0));
    out.push_back(std::move(draining));

    // The stream transport (issue 17 part 6).
    auto open_conns = family("sipr_connections_open", "TCP connections open", MetricType::Gauge);
    int64_t open_now = 0;
    for (const WorkerStats* w : workers) open_now += w->stream.open.get();
    open_conns.metric.push_back(gauge(static_cast<double>(open_now)));
    out.push_back(std::move(open_conns));
    auto accepted =
        family("sipr_connections_accepted_total", "TCP connections accepted", MetricType::Counter);
    accepted.metric.push_back(counter(
        static_cast<double>(sum([](const WorkerStats& s) { return s.stream.accepted.get(); }))));
    out.push_back(std::move(accepted));
    auto refused = family("sipr_connections_refused_total",
                          "TCP connections reset at accept, by reason", MetricType::Counter);
    for (std::size_t i = 0; i < net::kStreamRefusalNames.size(); ++i) {
        uint64_t v = sum([i](const WorkerStats& s) { return s.stream.refused[i].get(); });
        refused.metric.push_back(
            counter(static_cast<double>(v), {{"reason", net::kStreamRefusalNames[i]}}));
    }
    out.push_back(std::move(refused));
    auto closed = family("sipr_connections_closed_total", "TCP connections closed, by reason",
                         MetricType::Counter);
    for (std::size_t i = 0; i < net::kStreamCloseNames.size(); ++i) {
        uint64_t v = sum([i](const WorkerStats& s) { return s.stream.closed[i].get(); });
        closed.metric.push_back(
            counter(static_cast<double>(v), {{"reason", net::kStreamCloseNames[i]}}));
    }
    out.push_back(std::move(closed));
    auto bytes = family("sipr_stream_bytes_total", "Bytes read and written on TCP connections",
                        MetricType::Counter);
    bytes.metric.push_back(counter(
        static_cast<double>(sum([](const WorkerStats& s) { return s.stream.bytes_in.get(); })),
        {{"direction", "in"}}));
    bytes.metric.push_back(counter(
        static_cast<double>(sum([](const WorkerStats& s) { return s.stream.bytes_out.get(); })),
        {{"direction", "out"}}));
    out.push_back(std::move(bytes));

    auto hist =
        family("sipr_lookup_duration_seconds", "Redis look-up latency", MetricType::Histogram);
    ClientMetric hm;
    uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= base::DurationHistogram::kBoundsUs.size(); ++i) {
        cumulative +=
            sum([i](const WorkerStats& s) { return s.redirect.lookup_duration.bucket(i); });
        ClientMetric::Bucket b;
        b.cumulative_count = cumulative;
        b.upper_bound = i < base::DurationHistogram::kBoundsUs.size()
                            ? static_cast<double>(base::DurationHistogram::kBoundsUs[i]) / 1e6
                            : std::numeric_limits<double>::infinity();
        hm.histogram.bucket.push_back(b);
    }
    hm.histogram.sample_count = cumulative;
    hm.histogram.sample_sum = static_cast<double>(sum([](const WorkerStats& s) {
                                  return s.redirect.lookup_duration.sum_us();
                              })) /
                              1e6;
    hist.metric.push_back(std::move(hm));
    out.push_back(std::move(hist));

    auto info = family("sipr_build_info", "Build information", MetricType::Gauge);
    info.metric.push_back(gauge(1.0, {{"program", program}, {"version", SIPR_VERSION}}));
    out.push_back(std::move(info));
    return out;
}

}  // namespace

class Exporter::Collector : public prometheus::Collectable {
  public:
    Collector(std::string program, std::vector<const WorkerStats*> workers)
        : program_(std::move(program)), workers_(std::move(workers)) {}
    std::vector<MetricFamily> Collect() const override { return collect(program_, workers_); }

  private:
    std::string program_;
    std::vector<const WorkerStats*> workers_;
};

Exporter::Exporter(const std::string& listen, const std::string& program,
                   std::vector<const WorkerStats*> workers)
    : collector_(std::make_shared<Collector>(program, std::move(workers))) {
    try {
        exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
    } catch (const std::exception& e) {
        throw std::runtime_error("cannot serve metrics on " + listen + ": " + e.what());
    }
    exposer_->RegisterCollectable(collector_);
    listen_ = listen;
}

namespace {

// Where to connect to reach an exposer listening on `listen` ("host:port", "[v6]:port"): that
// address, or loopback for a wildcard or a name.
sockaddr_storage wake_address(const std::string& listen, uint16_t port) {
    sockaddr_storage ss{};
    const bool v6 = !listen.empty() && listen.front() == '[';
    std::string host =
        v6 ? listen.substr(1, listen.find(']') - 1) : listen.substr(0, listen.rfind(':'));
    if (v6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1 ||
            IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
            a->sin6_addr = in6addr_loopback;
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1 || a->sin_addr.s_addr == INADDR_ANY)
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    return ss;
}

// Opens and closes one TCP connection to `to`: that wakes civetweb's listener thread.
void poke(const sockaddr_storage& to) noexcept {
    int fd = socket(to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    socklen_t len = to.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    (void)connect(fd, reinterpret_cast<const sockaddr*>(&to), len);
    close(fd);
}

}  // namespace

Exporter::~Exporter() {
    // civetweb's listener thread waits in poll() with a 2 s quantum and looks at its stop flag
    // only when it wakes, so stopping the exposer took 0-2 s (1.1 s median) of every daemon's
    // exit. A connection to our own port wakes it; they are made until the exposer is gone
    // (the first may come before the stop flag is set).
    const uint16_t p = exposer_ ? port() : 0;
    if (p == 0) return;
    std::atomic<bool> done{false};
    std::thread poker;
    try {
        poker = std::thread([&done, to = wake_address(listen_, p)] {
            while (!done.load(std::memory_order_relaxed)) {
                poke(to);
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        });
    } catch (const std::system_error&) {
        // No thread: the exposer stops on its own, only slower.
    }
    exposer_.reset();
    done.store(true, std::memory_order_relaxed);
    if (poker.joinable()) poker.join();
}

uint16_t Exporter::port() const {
    auto ports = exposer_->GetListeningPorts();
    return ports.empty() ? 0 : static_cast<uint16_t>(ports.front());
}

std::string render(const std::string& program, const std::vector<const WorkerStats*>& workers) {
    prometheus::TextSerializer ser;
    return ser.Serialize(collect(program, workers));
}

}  // namespace sipr::metrics
