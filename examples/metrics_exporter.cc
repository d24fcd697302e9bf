// Exports an engine's statistics (Engine::GetStatistics) in the Prometheus
// text format, over a tiny HTTP endpoint:
//
//   revkv_metrics_exporter --db DIR [--port N] [--requests N]
//
// Opens the store at DIR, makes a few writes to bucket "demo" and takes a
// lock (so that there is something to see), then listens on 127.0.0.1:N
// (0, the default: any free port) and prints "listening on
// http://127.0.0.1:<port>/metrics". GET /metrics answers the statistics;
// anything else is 404. Exits after N requests (0, the default: never).
// In a service, call PrometheusText(engine->GetStatistics()) from your own
// HTTP server's handler instead.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "revkv/revkv.h"

namespace {

void Line(std::string* out, const std::string& name, const std::string& labels, double value) {
  char num[64];
  std::snprintf(num, sizeof(num), "%.17g", value);
  *out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + num + "\n";
}

void Counter(std::string* out, const std::string& name, const std::string& help, uint64_t v) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " counter\n";
  Line(out, name, "", static_cast<double>(v));
}

// One histogram's series (Prometheus buckets are cumulative, in seconds).
void HistogramSeries(std::string* out, const std::string& name, const std::string& labels,
                     const revkv::Histogram& h) {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds_us.size(); ++i) {
    cumulative += h.counts[i];
    char le[64];
    std::snprintf(le, sizeof(le), "%g", h.bounds_us[i] / 1e6);
    Line(out, name + "_bucket", labels + sep + "le=\"" + le + "\"",
         static_cast<double>(cumulative));
  }
  Line(out, name + "_bucket", labels + sep + "le=\"+Inf\"", static_cast<double>(h.count));
  Line(out, name + "_sum", labels, h.sum_us / 1e6);
  Line(out, name + "_count", labels, static_cast<double>(h.count));
}

void HistogramFamily(std::string* out, const std::string& name, const std::string& help,
                     const revkv::Histogram& h) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  HistogramSeries(out, name, "", h);
}

}  // namespace

// The Prometheus text exposition format (version 0.0.4) of `s`.
std::string PrometheusText(const revkv::Statistics& s) {
  std::string out;
  out += "# HELP revkv_operations_total Bucket writes by operation and outcome.\n"
         "# TYPE revkv_operations_total counter\n";
  for (const auto& [op, o] : s.operations) {
    const std::string l = "operation=\"" + op + "\",outcome=";
    Line(&out, "revkv_operations_total", l + "\"ok\"", static_cast<double>(o.ok));
    Line(&out, "revkv_operations_total", l + "\"conflict\"", static_cast<double>(o.conflicts));
    Line(&out, "revkv_operations_total", l + "\"error\"", static_cast<double>(o.errors));
  }
  out += "# HELP revkv_operation_latency_seconds Bucket write latency by operation.\n"
         "# TYPE revkv_operation_latency_seconds histogram\n";
  for (const auto& [op, o] : s.operations) {
    HistogramSeries(&out, "revkv_operation_latency_seconds", "operation=\"" + op + "\"",
                    o.latency);
  }
  Counter(&out, "revkv_update_retries_total",
          "Attempts UpdateWithRetry made again after a conflict.", s.update_retries);
  Counter(&out, "revkv_apply_batches_total", "Commits of the replicas' apply loops.",
          s.apply_batches);
  Counter(&out, "revkv_applied_messages_total", "Stream messages the replicas applied.",
          s.applied_messages);
  Counter(&out, "revkv_own_writes_applied_total",
          "Own writes applied ahead of the stream's consumer.", s.own_writes_applied);
  HistogramFamily(&out, "revkv_apply_lag_seconds",
                  "From a message's server time to its apply.", s.apply_lag);
  Counter(&out, "revkv_reconnects_total", "Reconnects of the NATS connection.", s.reconnects);
  Counter(&out, "revkv_skipped_messages_total", "Stream messages skipped as never applicable.",
          s.skipped_messages);
  Counter(&out, "revkv_lock_acquires_total", "Locks granted.", s.lock_acquires);
  Counter(&out, "revkv_lock_waits_total", "Grants that waited for another holder.",
          s.lock_waits);
  Counter(&out, "revkv_lock_takeovers_total", "Grants that took over an expired lease.",
          s.lock_takeovers);
  Counter(&out, "revkv_lock_timeouts_total", "Acquires that gave up.", s.lock_timeouts);
  Counter(&out, "revkv_lock_losses_total", "Held locks lost before their release.",
          s.lock_losses);
  HistogramFamily(&out, "revkv_lock_wait_seconds", "From Acquire to the grant.", s.lock_wait);
  return out;
}

int main(int argc, char** argv) {
  std::string db;
  int port = 0;
  long requests = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--db") {
      db = argv[i + 1];
    } else if (flag == "--port") {
      port = std::atoi(argv[i + 1]);
    } else if (flag == "--requests") {
      requests = std::atol(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 1;
    }
  }
  if (db.empty() || port < 0 || port > 65535 || requests < 0) {
    std::fprintf(stderr, "usage: %s --db DIR [--port N] [--requests N]\n", argv[0]);
    return 1;
  }

  auto engine = revkv::Engine::Open({.path = db});
  if (!engine.ok()) {
    std::fprintf(stderr, "open: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  auto bucket = (*engine)->OpenBucket("demo");
  if (!bucket.ok()) {
    std::fprintf(stderr, "bucket: %s\n", bucket.status().ToString().c_str());
    return 1;
  }
  // Something to see: three Puts, a stale compare-and-swap, a lock.
  uint64_t first = 0;
  for (int i = 0; i < 3; ++i) {
    auto rev = (*bucket)->Put("job.1", "state " + std::to_string(i));
    if (!rev.ok()) {
      std::fprintf(stderr, "put: %s\n", rev.status().ToString().c_str());
      return 1;
    }
    if (i == 0) first = *rev;
  }
  (void)(*bucket)->Update("job.1", "stale", first);  // Conflict
  if (auto lock = (*engine)->Acquire("job.1.lock", std::chrono::seconds(5),
                                     std::chrono::seconds(1));
      lock.ok()) {
    (void)(*lock)->Release();
  }

  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 16) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, std::strerror(errno));
    return 1;
  }
  std::printf("listening on http://127.0.0.1:%d/metrics\n", ntohs(addr.sin_port));
  std::fflush(stdout);

  for (long served = 0; requests == 0 || served < requests; ++served) {
    const int client = accept(fd, nullptr, nullptr);
    if (client < 0) continue;
    char buf[4096];
    const ssize_t n = read(client, buf, sizeof(buf) - 1);
    const std::string request(buf, n > 0 ? static_cast<size_t>(n) : 0);
    std::string status = "404 Not Found", body = "not found; try GET /metrics\n";
    if (request.rfind("GET /metrics ", 0) == 0 || request.rfind("GET /metrics?", 0) == 0) {
      status = "200 OK";
      body = PrometheusText((*engine)->GetStatistics());
    }
    const std::string response = "HTTP/1.1 " + status +
                                 "\r\nContent-Type: text/plain; version=0.0.4\r\n"
                                 "Content-Length: " + std::to_string(body.size()) +
                                 "\r\nConnection: close\r\n\r\n" + body;
    for (size_t sent = 0; sent < response.size();) {
      const ssize_t w = write(client, response.data() + sent, response.size() - sent);
      if (w <= 0) break;
      sent += static_cast<size_t>(w);
    }
    close(client);
  }
  close(fd);
  return 0;
}
