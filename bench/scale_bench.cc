// Scale curves (DESIGN §8): how the cost of a bucket grows with its size.
// For buckets of 10k, 100k and 1M distinct keys (100-byte values, history 1):
//
//   BM_LocalGet/keys:N    Get of random existing keys from a local-only bucket,
//                         p50/p99 (µs)
//   BM_ReplicaGet/keys:N  the same from a replica that has applied the bucket
//   BM_Bootstrap/keys:N   a new replica on an empty directory: Engine::Open,
//                         OpenBucket, Sync (keys/s); the process's RSS growth
//                         and the replica directory's size once synced
//   BM_Keys/keys:N        Keys(">"): the full sorted listing
//   BM_KeysPage/keys:N    KeysAfter(">", "", 4096): the first page
//
// bench/scale_report.py turns the JSON output into a table and a plot.
//
// Each size's data is made once, on first use, and reused by every
// repetition: its stream filled by raw nats.c js_PublishAsync, its local
// bucket filled by transactions of kMaxTxnOps Puts, and a resident replica
// that has applied the stream (the setup times go to stderr). The benchmark
// starts its own nats-server (the bootstrapped newest one) on a free loopback
// port with a temporary store, and stops it at exit.
//
// Flags (before the benchmark library's): --sizes=N,N,... picks the bucket
// sizes (default 10000,100000,1000000).

#include <benchmark/benchmark.h>
#include <malloc.h>
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kValueBytes = 100;
// Get samples behind each p50/p99 per repetition: the p99 rests on 100.
constexpr int kGetSamples = 10000;
constexpr size_t kPageKeys = 4096;
// js_PublishAsync publishes this many messages, then drains the acks.
constexpr int kAsyncBatch = 1000;
// Long enough for a replica of 1M keys on a loaded 2-core machine.
constexpr auto kSyncTimeout = std::chrono::minutes(10);

std::vector<int64_t> g_sizes = {10000, 100000, 1000000};

revkv::Options EngineOptions(const std::string& path, const std::string& url) {
  revkv::Options o;
  o.path = path;
  o.nats.servers = {url};
  return o;
}

std::string BucketName(const char* kind, int64_t keys) {
  return std::string(kind) + "_" + std::to_string(keys);
}

std::string Key(int64_t i) { return "k." + std::to_string(i); }

// A different, incompressible value per key, so that disk use is not
// flattered by RocksDB's compression of a repeated byte.
std::string Value(int64_t i) {
  static constexpr char kAlphabet[] =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/";
  std::mt19937_64 rng(static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL + 1);
  std::string v(kValueBytes, ' ');
  for (char& c : v) c = kAlphabet[rng() % 64];
  return v;
}

// Nearest-rank percentile, in microseconds, of samples in nanoseconds.
double PercentileUs(std::vector<int64_t> ns, double p) {
  if (ns.empty()) return 0;
  std::sort(ns.begin(), ns.end());
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(ns.size())));
  rank = std::clamp<size_t>(rank, 1, ns.size());
  return static_cast<double>(ns[rank - 1]) / 1e3;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The process's resident set (VmRSS), in bytes; 0 if unreadable.
int64_t RssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream in(line.substr(6));
      int64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

// Bytes in the regular files under `dir`: all, and those of RocksDB's
// write-ahead logs (*.log) and tables (*.sst).
struct DiskUse {
  int64_t total = 0;
  int64_t wal = 0;
  int64_t sst = 0;
};

DiskUse DiskUseOf(const std::string& dir) {
  DiskUse use;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const auto size = static_cast<int64_t>(it->file_size(ec));
    if (ec) continue;
    use.total += size;
    const auto ext = it->path().extension();
    if (ext == ".log") use.wal += size;
    if (ext == ".sst") use.sst += size;
  }
  return use;
}

// The server, a raw nats.c client that fills the streams, and the resident
// engine holding every size's local bucket and replica.
struct World {
  revkv::testing::NatsServer server;
  revkv::testing::TempDir dir;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  // A second JetStream context for js_PublishAsync, so that its pending acks
  // never mix with other calls.
  jsCtx* js_async = nullptr;
  std::atomic<int64_t> async_errors{0};
  std::unique_ptr<revkv::Engine> engine;
  std::string error;

  static void OnAsyncPublishError(jsCtx*, jsPubAckErr*, void* closure) {
    static_cast<World*>(closure)->async_errors.fetch_add(1);
  }

  World() {
    if (!server.Start()) {
      error = server.error();
      return;
    }
    if (revkv::testing::ConnectClient(server.url(), &nc, &js) != NATS_OK) {
      error = "cannot connect nats.c";
      return;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.ErrHandler = &World::OnAsyncPublishError;
    jo.PublishAsync.ErrHandlerClosure = this;
    if (natsConnection_JetStream(&js_async, nc, &jo) != NATS_OK) {
      error = "cannot open a JetStream context for async publishes";
      return;
    }
    auto e = revkv::Engine::Open(EngineOptions(dir.path(), server.url()));
    if (!e.ok()) {
      error = e.status().ToString();
      return;
    }
    engine = std::move(*e);
  }
  ~World() {
    engine.reset();
    jsCtx_Destroy(js_async);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }

  // Creates KV bucket `bucket` (history 1) and publishes Key(i) = Value(i)
  // for i in [0, keys) with js_PublishAsync, and sets `last_sequence` to
  // the stream's. Returns an error text, empty on success.
  std::string FillStream(const std::string& bucket, int64_t keys, uint64_t* last_sequence) {
    const int64_t errors_before = async_errors.load();
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = bucket.c_str();
    cfg.History = 1;
    kvStore* kv = nullptr;
    if (js_CreateKeyValue(&kv, js, &cfg) != NATS_OK) {
      return "cannot create bucket '" + bucket + "'";
    }
    kvStore_Destroy(kv);
    const std::string prefix = "$KV." + bucket + ".";
    for (int64_t i = 0; i < keys; ++i) {
      const std::string subject = prefix + Key(i);
      const std::string value = Value(i);
      natsStatus s = js_PublishAsync(js_async, subject.c_str(), value.data(),
                                     static_cast<int>(value.size()), nullptr);
      if (s != NATS_OK) {
        return std::string("js_PublishAsync: ") + natsStatus_GetText(s);
      }
      if ((i + 1) % kAsyncBatch == 0 || i + 1 == keys) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 60000;
        s = js_PublishAsyncComplete(js_async, &po);
        if (s != NATS_OK) {
          return std::string("js_PublishAsyncComplete: ") + natsStatus_GetText(s);
        }
      }
    }
    if (async_errors.load() != errors_before) {
      return "the server refused async publishes";
    }
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, js, ("KV_" + bucket).c_str(), nullptr, nullptr) != NATS_OK) {
      return "cannot read the stream info of bucket '" + bucket + "'";
    }
    *last_sequence = si->State.LastSeq;
    const uint64_t msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    if (msgs != static_cast<uint64_t>(keys)) {
      return "bucket '" + bucket + "' holds " + std::to_string(msgs) + " messages, not " +
             std::to_string(keys);
    }
    return "";
  }
};

// One size's data, made on first use.
struct SizeData {
  int64_t keys = 0;
  uint64_t last_sequence = 0;              // of stream "scale_<keys>"
  std::shared_ptr<revkv::Bucket> local;    // "local_<keys>", local-only
  std::shared_ptr<revkv::Bucket> replica;  // "scale_<keys>", synced
  std::string error;

  SizeData(World& w, int64_t n) : keys(n) {
    // The local bucket fills on its own thread meanwhile: its cost is this
    // process's CPU, the stream's mostly the server's.
    std::string local_error;
    double local_seconds = 0;
    std::thread local_fill([&] {
      const auto start = Clock::now();
      local_error = FillLocal(w);
      local_seconds = Seconds(Clock::now() - start);
    });
    const std::string name = BucketName("scale", keys);
    const auto t0 = Clock::now();
    error = w.FillStream(name, keys, &last_sequence);
    const auto t1 = Clock::now();
    if (error.empty()) {
      auto r = w.engine->OpenBucket(name);
      if (r.ok()) {
        replica = *r;
        if (revkv::Status s = replica->Sync(kSyncTimeout); !s.ok()) error = s.ToString();
      } else {
        error = r.status().ToString();
      }
    }
    const auto t2 = Clock::now();
    local_fill.join();
    if (error.empty()) error = local_error;
    if (!error.empty()) return;
    std::fprintf(stderr,
                 "scale: %lld keys: stream filled in %.1f s, resident replica synced in %.1f s; "
                 "local bucket filled meanwhile in %.1f s; setup %.1f s\n",
                 static_cast<long long>(keys), Seconds(t1 - t0), Seconds(t2 - t1), local_seconds,
                 Seconds(Clock::now() - t0));
  }

  // Fills the local-only bucket with transactions of kMaxTxnOps Puts.
  // Returns an error text, empty on success.
  std::string FillLocal(World& w) {
    revkv::BucketOptions lo;
    lo.local_only = true;
    auto l = w.engine->OpenBucket(BucketName("local", keys), lo);
    if (!l.ok()) return l.status().ToString();
    local = *l;
    const auto batch = static_cast<int64_t>(revkv::kMaxTxnOps);
    for (int64_t first = 0; first < keys; first += batch) {
      revkv::Txn txn;
      for (int64_t i = first; i < std::min(keys, first + batch); ++i) {
        txn.ops.push_back(revkv::TxnOp::Put(Key(i), Value(i)));
      }
      auto r = local->Commit(txn);
      if (!r.ok()) return r.status().ToString();
    }
    return "";
  }
};

// Created on first use, so a --benchmark_filter pays only for what it runs;
// destroyed by main() after the run, engines before the server.
std::unique_ptr<World> g_world;
std::map<int64_t, std::unique_ptr<SizeData>> g_data;

// The size's data, or nullptr after SkipWithError.
SizeData* DataFor(benchmark::State& state) {
  if (!g_world) g_world = std::make_unique<World>();
  if (!g_world->error.empty()) {
    state.SkipWithError(g_world->error.c_str());
    return nullptr;
  }
  const int64_t keys = state.range(0);
  auto& d = g_data[keys];
  if (!d) d = std::make_unique<SizeData>(*g_world, keys);
  if (!d->error.empty()) {
    state.SkipWithError(d->error.c_str());
    return nullptr;
  }
  return d.get();
}

// ---- Get ----

// kGetSamples Gets of random existing keys (the keys drawn before timing),
// each timed on its own.
void GetLatency(benchmark::State& state, revkv::Bucket& bucket, int64_t keys) {
  std::mt19937_64 rng(static_cast<uint64_t>(keys));
  std::uniform_int_distribution<int64_t> pick(0, keys - 1);
  std::vector<std::string> sample;
  sample.reserve(kGetSamples);
  for (int i = 0; i < kGetSamples; ++i) sample.push_back(Key(pick(rng)));
  std::vector<int64_t> ns;
  ns.reserve(kGetSamples);
  size_t i = 0;
  for (auto _ : state) {
    const auto start = Clock::now();
    auto v = bucket.Get(sample[i++ % sample.size()]);
    const auto end = Clock::now();
    if (!v.ok()) return state.SkipWithError(v.status().ToString().c_str());
    benchmark::DoNotOptimize(v->size());
    ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
  }
  state.counters["p50_us"] = PercentileUs(ns, 0.50);
  state.counters["p99_us"] = PercentileUs(ns, 0.99);
  state.SetItemsProcessed(state.iterations());
}

void BM_LocalGet(benchmark::State& state) {
  SizeData* d = DataFor(state);
  if (d != nullptr) GetLatency(state, *d->local, d->keys);
}

void BM_ReplicaGet(benchmark::State& state) {
  SizeData* d = DataFor(state);
  if (d != nullptr) GetLatency(state, *d->replica, d->keys);
}

// ---- Bootstrap ----

// A new replica of the size's stream: Engine::Open on an empty directory
// (its own connection), OpenBucket, then Sync until it has applied the
// stream's last sequence. Then, untimed: the growth of the process's RSS
// since before Open (with freed heap returned to the system first, so that
// the engines of earlier iterations do not hide it), and the bytes in the
// replica's directory as they are (revkv has no flush or compaction call).
void BM_Bootstrap(benchmark::State& state) {
  SizeData* d = DataFor(state);
  if (d == nullptr) return;
  const std::string name = BucketName("scale", d->keys);
  for (auto _ : state) {
    revkv::testing::TempDir dir;
    malloc_trim(0);
    const int64_t rss_before = RssBytes();
    const auto start = Clock::now();
    auto e = revkv::Engine::Open(EngineOptions(dir.path(), g_world->server.url()));
    if (!e.ok()) return state.SkipWithError(e.status().ToString().c_str());
    auto b = (*e)->OpenBucket(name);
    if (!b.ok()) return state.SkipWithError(b.status().ToString().c_str());
    revkv::Status s = (*b)->Sync(kSyncTimeout);
    const auto end = Clock::now();
    if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
    const int64_t rss_after = RssBytes();
    state.SetIterationTime(Seconds(end - start));
    if ((*b)->LastRevision() != d->last_sequence) {
      return state.SkipWithError("the replica's revision is not the stream's last sequence");
    }
    const DiskUse disk = DiskUseOf(dir.path());
    const double keys = static_cast<double>(d->keys);
    state.counters["keys_per_s"] = keys / Seconds(end - start);
    state.counters["rss_mib"] = static_cast<double>(rss_after - rss_before) / (1 << 20);
    state.counters["rss_bytes_per_key"] = static_cast<double>(rss_after - rss_before) / keys;
    state.counters["disk_mib"] = static_cast<double>(disk.total) / (1 << 20);
    state.counters["disk_wal_mib"] = static_cast<double>(disk.wal) / (1 << 20);
    state.counters["disk_sst_mib"] = static_cast<double>(disk.sst) / (1 << 20);
    state.counters["disk_bytes_per_key"] = static_cast<double>(disk.total) / keys;
    b->reset();
    e->reset();
  }
}

// ---- Keys ----

void BM_Keys(benchmark::State& state) {
  SizeData* d = DataFor(state);
  if (d == nullptr) return;
  for (auto _ : state) {
    auto keys = d->replica->Keys(">");
    if (!keys.ok()) return state.SkipWithError(keys.status().ToString().c_str());
    if (static_cast<int64_t>(keys->size()) != d->keys) {
      return state.SkipWithError("Keys did not list every key");
    }
  }
  state.SetItemsProcessed(state.iterations() * d->keys);
}

void BM_KeysPage(benchmark::State& state) {
  SizeData* d = DataFor(state);
  if (d == nullptr) return;
  const size_t want = std::min(kPageKeys, static_cast<size_t>(d->keys));
  for (auto _ : state) {
    auto page = d->replica->KeysAfter(">", "", kPageKeys);
    if (!page.ok()) return state.SkipWithError(page.status().ToString().c_str());
    if (page->size() != want) return state.SkipWithError("the first page is short");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(want));
}

// "--sizes=10000,100000": positive key counts, or false.
bool ParseSizes(std::string_view list, std::vector<int64_t>* out) {
  out->clear();
  std::istringstream in{std::string(list)};
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long long n = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || n <= 0) return false;
    out->push_back(n);
  }
  return !out->empty();
}

}  // namespace

int main(int argc, char** argv) {
  // --sizes (ours) is removed before the library parses the rest.
  constexpr std::string_view kSizesFlag = "--sizes=";
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg.substr(0, kSizesFlag.size()) == kSizesFlag) {
      if (!ParseSizes(arg.substr(kSizesFlag.size()), &g_sizes)) {
        std::fprintf(stderr, "%s: want %sN,N,... (positive key counts)\n", argv[0],
                     kSizesFlag.data());
        return 1;
      }
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;

  auto each_size = [](benchmark::internal::Benchmark* b) {
    b->ArgName("keys");
    for (int64_t n : g_sizes) b->Arg(n);
  };
  benchmark::RegisterBenchmark("BM_LocalGet", BM_LocalGet)
      ->Apply(each_size)
      ->Iterations(kGetSamples)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_ReplicaGet", BM_ReplicaGet)
      ->Apply(each_size)
      ->Iterations(kGetSamples)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_Bootstrap", BM_Bootstrap)
      ->Apply(each_size)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_Keys", BM_Keys)
      ->Apply(each_size)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_KeysPage", BM_KeysPage)
      ->Apply(each_size)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::string sizes;
  for (int64_t n : g_sizes) sizes += (sizes.empty() ? "" : ",") + std::to_string(n);
  benchmark::AddCustomContext("nats_server", revkv::testing::NatsServer::Version());
  benchmark::AddCustomContext("revkv_value_bytes", std::to_string(kValueBytes));
  benchmark::AddCustomContext("revkv_scale_sizes", sizes);
  benchmark::AddCustomContext("revkv_get_samples", std::to_string(kGetSamples));
  benchmark::AddCustomContext("revkv_page_keys", std::to_string(kPageKeys));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // Buckets and engines first, then the server (World's last member to go).
  g_data.clear();
  g_world.reset();
  return 0;
}
