// revkv_campaign: the fault campaign's runner (DESIGN §9). It starts a
// nats-server (or a three-node cluster with R3 buckets), N worker processes
// (revkv_campaign_worker, each an Engine with its own replica), a recorder
// that writes the server's history of the bucket as it is stored, and a
// nemesis that injects faults at random moments. Afterwards it lets every
// worker sync and dump its replica, dumps the server's final state, and runs
// the history checker (check_history.py) on the run folder. On 2.12+ it
// first creates the bank's accounts that the workers' transactions move
// amounts between.
//
// Usage: revkv_campaign --out DIR [--topology single|r3] [--server PATH]
//          [--seconds N] [--workers N] [--keys N] [--seed S]
//          [--faults kill,pause,restart,leader,partition,delay] [--fault-every-ms M]
//          [--lease-ms L] [--pace-us P]
// --pace-us makes each worker wait between operations, which keeps the
// history of a long run small enough to check.
// Exit status: the checker's (0: no anomaly).

#include <nats/nats.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/record_codec.h"
#include "revkv/revkv.h"
#include "tests/campaign/history_line.h"
#include "tests/nats_server.h"
#include "tests/tcp_relay.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using revkv::testing::NatsCluster;
using revkv::campaign::MonoNs;
using revkv::campaign::ParseValue;
using revkv::campaign::Quote;
using revkv::campaign::WallNs;
using revkv::testing::NatsServer;

constexpr char kBucket[] = "campaign";

struct Args {
  std::string out;
  std::string topology = "single";
  std::string server = revkv::testing::NatsServer::Binary();
  int seconds = 30;
  int workers = 3;
  int keys = 6;
  // Default: from the clock; run.json and the summary name it, so that
  // --seed repeats a run's choices.
  uint64_t seed = static_cast<uint64_t>(WallNs()) % 1000000;
  std::set<std::string> faults = {"kill", "pause", "restart", "leader"};
  int fault_every_ms = 3000;
  int lease_ms = 1500;
  int pace_us = 0;
};

// Appends lines to a file, one write at a time, from any thread.
class JsonLines {
 public:
  explicit JsonLines(const std::string& path) : out_(path, std::ios::app) {}
  void Line(const std::string& body) {
    std::lock_guard<std::mutex> lock(mu_);
    out_ << "{" << body << "}\n";
    out_.flush();
  }

 private:
  std::mutex mu_;
  std::ofstream out_;
};

// The servers under test: one server or a three-node cluster.
class Servers {
 public:
  explicit Servers(const Args& a) : r3_(a.topology == "r3") {
    if (r3_) {
      cluster_ = std::make_unique<NatsCluster>(a.server);
    } else {
      single_ = std::make_unique<NatsServer>(a.server);
    }
  }
  bool Start(std::string* error) {
    if (r3_) {
      if (cluster_->Start()) return true;
      *error = cluster_->error();
      return false;
    }
    if (single_->Start()) return true;
    *error = single_->error();
    return false;
  }
  int size() const { return r3_ ? NatsCluster::kSize : 1; }
  NatsServer& node(int i) { return r3_ ? cluster_->node(i) : *single_; }
  std::string url(int i) { return node(i).url(); }
  // Worker w's server list: its home node first, then the others.
  std::string ServersFor(int w) {
    std::string out;
    for (int k = 0; k < size(); ++k) {
      const int i = (w + k) % size();
      out += (k == 0 ? "" : ",") + (relayed() ? Relay(w, i)->url() : url(i));
    }
    return out;
  }
  int StreamLeader() { return r3_ ? cluster_->StreamLeader(std::string("KV_") + kBucket) : -1; }
  // With partitions or delays, each worker reaches each node through a relay
  // of its own that the nemesis can cut or slow down. Workers then ignore the
  // nodes a cluster advertises, which would bypass the relays.
  void UseRelays(int workers) {
    for (int w = 0; w < workers; ++w) {
      for (int i = 0; i < size(); ++i) {
        relays_.push_back(std::make_unique<revkv::testing::TcpRelay>(node(i).port()));
      }
    }
  }
  bool relayed() const { return !relays_.empty(); }
  // Worker w's relays, one per node.
  std::vector<revkv::testing::TcpRelay*> RelaysOf(int w) {
    std::vector<revkv::testing::TcpRelay*> out;
    for (int i = 0; relayed() && i < size(); ++i) out.push_back(Relay(w, i));
    return out;
  }
  bool r3() const { return r3_; }

 private:
  revkv::testing::TcpRelay* Relay(int w, int node) {
    return relays_[static_cast<size_t>(w * size() + node)].get();
  }

  const bool r3_;
  std::unique_ptr<NatsServer> single_;
  std::unique_ptr<NatsCluster> cluster_;
  std::vector<std::unique_ptr<revkv::testing::TcpRelay>> relays_;
};

// The replica's tolerance of clock skew in every worker (NatsOptions::
// max_clock_skew), which bounds how late it may expire a TTL'd entry.
constexpr int kClockSkewMs = 500;
// The keys the workload creates with a TTL (campaign_worker.cc).
constexpr int kTtlKeys = 3;
// The bank's accounts "b.0".."b.<kBankKeys-1>" (campaign_worker.cc), each
// created with kBankStart; workers move amounts between them.
constexpr int kBankKeys = 4;
constexpr long kBankStart = 100;

// Whether a version such as "nats-server: v2.12.1" is at least major.minor.
bool AtLeast(const std::string& version, int major, int minor) {
  const size_t digit = version.find_first_of("0123456789");
  int ma = 0, mi = 0;
  if (digit == std::string::npos ||
      std::sscanf(version.c_str() + digit, "%d.%d", &ma, &mi) != 2) {
    return false;
  }
  return ma > major || (ma == major && mi >= minor);
}

// The data bucket with history 64, and the locks bucket. From 2.12 the data
// bucket also takes per-key TTLs, with limit markers of 1 s (the server
// would raise a shorter TTL to the marker TTL on a bucket with history), and
// atomic batches (fenced compare-and-swap writes): nats.c 3.4.1 cannot
// ask for those, so that stream is created with a raw API request.
bool CreateBuckets(const std::string& url, int replicas, bool newer_features,
                   std::string* error) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsStatus s = revkv::testing::ConnectClient(url, &nc, &js);
  for (const char* name : {kBucket, "locks"}) {
    if (s != NATS_OK) break;
    if (newer_features && std::strcmp(name, kBucket) == 0) {
      const std::string body =
          std::string("{\"name\":\"KV_") + kBucket + "\",\"subjects\":[\"$KV." + kBucket +
          ".>\"],\"retention\":\"limits\",\"max_consumers\":-1,\"max_msgs\":-1,"
          "\"max_bytes\":-1,\"discard\":\"new\",\"max_age\":0,\"max_msgs_per_subject\":64,"
          "\"max_msg_size\":-1,\"storage\":\"file\",\"num_replicas\":" +
          std::to_string(replicas) +
          ",\"deny_delete\":true,\"allow_rollup_hdrs\":true,\"allow_direct\":true,"
          "\"allow_msg_ttl\":true,\"subject_delete_marker_ttl\":1000000000,"
          "\"allow_atomic\":true}";
      natsMsg* reply = nullptr;
      s = natsConnection_Request(&reply, nc, (std::string("$JS.API.STREAM.CREATE.KV_") + kBucket).c_str(),
                                 body.data(), static_cast<int>(body.size()), 10000);
      if (s == NATS_OK &&
          std::string_view(natsMsg_GetData(reply), natsMsg_GetDataLength(reply)).find("\"error\"") !=
              std::string_view::npos) {
        *error = "creating the data bucket: " +
                 std::string(natsMsg_GetData(reply), natsMsg_GetDataLength(reply));
        natsMsg_Destroy(reply);
        s = NATS_ERR;
        break;
      }
      natsMsg_Destroy(reply);
      continue;
    }
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = name;
    cfg.History = std::strcmp(name, kBucket) == 0 ? 64 : 1;
    cfg.Replicas = replicas;
    if (std::strcmp(name, "locks") == 0) cfg.TTL = 3600LL * 1000 * 1000 * 1000;
    kvStore* kv = nullptr;
    s = js_CreateKeyValue(&kv, js, &cfg);
    kvStore_Destroy(kv);
  }
  if (s != NATS_OK && error->empty()) {
    *error = std::string("creating the buckets: ") + natsStatus_GetText(s);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return s == NATS_OK;
}

// Creates the bank's accounts, exactly once, before any worker starts: one
// transaction of Creates through an engine of the runner's own (2.12+).
// Their values carry the op id "init".
bool CreateBank(const std::string& url, const std::string& dir, std::string* error) {
  revkv::Options o;
  o.path = dir;
  o.nats.servers = {url};
  o.nats.write_timeout = 10s;
  auto engine = revkv::Engine::Open(o);
  if (!engine.ok()) {
    *error = "creating the bank: " + engine.status().ToString();
    return false;
  }
  auto bucket = (*engine)->OpenBucket(kBucket, {.create_if_missing = false});
  if (!bucket.ok()) {
    *error = "creating the bank: " + bucket.status().ToString();
    return false;
  }
  revkv::Txn txn;
  for (int i = 0; i < kBankKeys; ++i) {
    txn.ops.push_back(revkv::TxnOp::Create("b." + std::to_string(i),
                                           "id=init;bal=" + std::to_string(kBankStart)));
  }
  auto done = (*bucket)->Commit(txn);
  if (!done.ok()) {
    *error = "creating the bank: " + done.status().ToString();
    return false;
  }
  return true;
}

// A message's KV operation: KV-Operation, or a limit marker's reason
// (nats-server 2.11+: MaxAge and Purge are PURGE, Remove is DEL), as
// revkv's apply loop reads them; anything else is a PUT.
std::string OperationOf(natsMsg* msg) {
  const char* op = nullptr;
  if (natsMsgHeader_Get(msg, "KV-Operation", &op) == NATS_OK && op != nullptr) {
    if (std::strcmp(op, "DEL") == 0 || std::strcmp(op, "PURGE") == 0) return op;
  }
  const char* reason = nullptr;
  if (natsMsgHeader_Get(msg, "Nats-Marker-Reason", &reason) == NATS_OK && reason != nullptr) {
    return std::strcmp(reason, "Remove") == 0 ? "DEL" : "PURGE";
  }
  return "PUT";
}

// Writes every message of the bucket's stream, in order, to server.jsonl,
// through an ordered consumer that follows the servers across restarts. A
// jump in stream sequences means messages removed before it saw them: it
// writes a gap line for them.
class Recorder {
 public:
  Recorder(const std::vector<std::string>& urls, const std::string& path) : out_(path) {
    natsOptions* opts = nullptr;
    natsOptions_Create(&opts);
    std::vector<const char*> u;
    for (const auto& s : urls) u.push_back(s.c_str());
    natsOptions_SetServers(opts, u.data(), static_cast<int>(u.size()));
    natsOptions_SetMaxReconnect(opts, -1);
    natsOptions_SetReconnectWait(opts, 100);
    natsConnection_Connect(&nc_, opts);
    natsOptions_Destroy(opts);
    natsConnection_JetStream(&js_, nc_, nullptr);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Config.Heartbeat = 1000LL * 1000 * 1000;
    const std::string subject = std::string("$KV.") + kBucket + ".>";
    ok_ = js_Subscribe(&sub_, js_, subject.c_str(), &Recorder::OnMsg, this, nullptr, &so,
                       nullptr) == NATS_OK;
  }
  ~Recorder() {
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }
  bool ok() const { return ok_; }
  uint64_t last() const { return last_.load(); }
  uint64_t messages() const { return count_.load(); }
  // The stream's last sequence as the server states it now, 0 if unknown.
  uint64_t StreamLast() {
    jsStreamInfo* si = nullptr;
    uint64_t last = 0;
    const std::string stream = std::string("KV_") + kBucket;
    if (js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, nullptr) == NATS_OK) {
      last = si->State.LastSeq;
      jsStreamInfo_Destroy(si);
    }
    return last;
  }
  // The key's last message as final-server.json wants it, or "" if none.
  // The key's last entry on the server as a JSON object in *out, or an
  // empty *out if the server holds none. False if the server did not answer.
  bool LastOf(const std::string& key, std::string* out) {
    natsMsg* msg = nullptr;
    const std::string stream = std::string("KV_") + kBucket;
    const std::string subject = std::string("$KV.") + kBucket + "." + key;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s =
        js_GetLastMsg(&msg, js_, stream.c_str(), subject.c_str(), nullptr, &jerr);
    out->clear();
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return true;
    if (s != NATS_OK) return false;
    std::string id, token;
    const std::string kind = OperationOf(msg);
    if (kind == "PUT") {
      ParseValue(std::string_view(natsMsg_GetData(msg), natsMsg_GetDataLength(msg)), &id, &token);
    }
    *out = "{\"rev\":" + std::to_string(natsMsg_GetSequence(msg)) + ",\"op\":\"" + kind +
           "\",\"value_id\":" + (id.empty() ? "null" : Quote(id)) +
           ",\"created\":" + std::to_string(natsMsg_GetTime(msg)) + "}";
    natsMsg_Destroy(msg);
    return true;
  }

 private:
  static void OnMsg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* self = static_cast<Recorder*>(closure);
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
      const uint64_t seq = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
      const std::string prefix = std::string("$KV.") + kBucket + ".";
      std::string key = natsMsg_GetSubject(msg);
      if (key.compare(0, prefix.size(), prefix) == 0) key = key.substr(prefix.size());
      const std::string kind = OperationOf(msg);
      std::string id, token, lock_token = "null";
      const std::string_view value(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
      if (kind == "PUT" && key.rfind("lock.", 0) == 0) {
        // A lock's record: its token is its own sequence until a renewal
        // or a fenced write writes it down.
        auto record = revkv::engine::DecodeLockRecord(value, "lock record");
        if (record.ok()) lock_token = std::to_string(record->token != 0 ? record->token : seq);
      } else if (kind == "PUT") {
        ParseValue(value, &id, &token);
      }
      const uint64_t last = self->last_.load();
      if (seq > last + 1 && last != 0) {
        self->out_.Line("\"gap_from\":" + std::to_string(last + 1) +
                        ",\"gap_to\":" + std::to_string(seq - 1));
      }
      if (seq > last) {
        self->out_.Line("\"seq\":" + std::to_string(seq) + ",\"key\":" + Quote(key) +
                        ",\"op\":\"" + kind + "\",\"value_id\":" +
                        (id.empty() ? "null" : Quote(id)) +
                        ",\"token\":" + (token.empty() ? "null" : token) +
                        ",\"lock_token\":" + lock_token);
        self->last_ = seq;
        ++self->count_;
      }
    }
    natsMsg_Destroy(msg);
  }

  JsonLines out_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  natsSubscription* sub_ = nullptr;
  bool ok_ = false;
  std::atomic<uint64_t> last_{0};
  std::atomic<uint64_t> count_{0};
};

class Workers {
 public:
  Workers(const Args& a, Servers* servers) : a_(a), servers_(servers) {}
  ~Workers() {
    for (auto& [w, pid] : pids_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  bool Spawn(int w) {
    std::vector<std::string> args = {
        REVKV_CAMPAIGN_WORKER, "--out", a_.out, "--worker", std::to_string(w),
        "--db", a_.out + "/replica-" + std::to_string(w), "--servers", servers_->ServersFor(w),
        "--keys", std::to_string(a_.keys), "--seed", std::to_string(a_.seed + w),
        "--lease-ms", std::to_string(a_.lease_ms), "--pace-us", std::to_string(a_.pace_us),
        "--ignore-discovered", servers_->relayed() ? "1" : "0",
        "--clock-skew-ms", std::to_string(kClockSkewMs)};
    std::string error;
    pid_t pid = revkv::testing::SpawnTiedToThisProcess(
        args, a_.out + "/worker-" + std::to_string(w) + ".stderr", &error);
    if (pid < 0) {
      std::fprintf(stderr, "campaign: cannot start worker %d: %s\n", w, error.c_str());
      return false;
    }
    std::lock_guard<std::mutex> lock(mu_);
    pids_[w] = pid;
    return true;
  }
  pid_t pid(int w) {
    std::lock_guard<std::mutex> lock(mu_);
    return pids_.count(w) ? pids_[w] : -1;
  }
  void Kill(int w) {
    pid_t p = pid(w);
    if (p <= 0) return;
    kill(p, SIGKILL);
    waitpid(p, nullptr, 0);
    std::lock_guard<std::mutex> lock(mu_);
    pids_.erase(w);
  }
  // SIGTERM to all; waits for each to dump its replica and exit.
  void StopAll(std::chrono::seconds limit) {
    std::map<int, pid_t> pids;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pids.swap(pids_);
    }
    for (auto& [w, p] : pids) {
      kill(p, SIGCONT);
      kill(p, SIGTERM);
    }
    const auto deadline = Clock::now() + limit;
    // Every worker stops writing first; then they read their final state.
    for (auto& [w, p] : pids) {
      const std::string stopped = a_.out + "/stopped-" + std::to_string(w);
      while (!std::ifstream(stopped).good() && Clock::now() < deadline &&
             waitpid(p, nullptr, WNOHANG) == 0) {
        std::this_thread::sleep_for(20ms);
      }
    }
    std::ofstream(a_.out + "/dump") << "\n";
    for (auto& [w, p] : pids) {
      int status = 0;
      while (waitpid(p, &status, WNOHANG) == 0) {
        if (Clock::now() >= deadline) {
          std::fprintf(stderr, "campaign: worker %d did not stop in time\n", w);
          kill(p, SIGKILL);
          waitpid(p, &status, 0);
          break;
        }
        std::this_thread::sleep_for(20ms);
      }
    }
  }

 private:
  const Args& a_;
  Servers* servers_;
  std::mutex mu_;
  std::map<int, pid_t> pids_;
};

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--out") a->out = v;
    else if (k == "--topology") a->topology = v;
    else if (k == "--server") a->server = v;
    else if (k == "--seconds") a->seconds = std::atoi(v.c_str());
    else if (k == "--workers") a->workers = std::atoi(v.c_str());
    else if (k == "--keys") a->keys = std::atoi(v.c_str());
    else if (k == "--seed") a->seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--fault-every-ms") a->fault_every_ms = std::atoi(v.c_str());
    else if (k == "--lease-ms") a->lease_ms = std::atoi(v.c_str());
    else if (k == "--pace-us") a->pace_us = std::atoi(v.c_str());
    else if (k == "--faults") {
      a->faults.clear();
      std::stringstream ss(v);
      std::string f;
      while (std::getline(ss, f, ',')) {
        if (!f.empty() && f != "none") a->faults.insert(f);
      }
    } else {
      return false;
    }
  }
  return !a->out.empty() && (a->topology == "single" || a->topology == "r3") &&
         a->workers > 0 && a->seconds > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    std::fprintf(stderr,
                 "usage: %s --out DIR [--topology single|r3] [--server PATH] [--seconds N] "
                 "[--workers N] [--keys N] [--seed S] "
                 "[--faults kill,pause,restart,leader,partition,delay|none] "
                 "[--fault-every-ms M] [--lease-ms L] [--pace-us P]\n",
                 argv[0]);
    return 2;
  }
  // A run folder starts empty; an earlier run's (it has run.json) is
  // replaced, anything else is left alone.
  std::error_code ec;
  if (std::filesystem::exists(a.out) && !std::filesystem::is_empty(a.out, ec)) {
    if (!std::filesystem::exists(a.out + "/run.json")) {
      std::fprintf(stderr, "campaign: %s is not empty and holds no earlier run; give a new "
                           "folder\n", a.out.c_str());
      return 2;
    }
    std::filesystem::remove_all(a.out, ec);
  }
  std::filesystem::create_directories(a.out);
  std::mt19937_64 rng(a.seed);
  Servers servers(a);
  std::string error;
  if (!servers.Start(&error)) {
    std::fprintf(stderr, "campaign: the servers did not start: %s\n", error.c_str());
    return 2;
  }
  const std::string version = NatsServer::Version(a.server);
  const bool newer_features = AtLeast(version, 2, 12);
  if (!CreateBuckets(servers.url(0), servers.r3() ? 3 : 1, newer_features, &error)) {
    std::fprintf(stderr, "campaign: %s\n", error.c_str());
    return 2;
  }
  std::vector<std::string> urls;
  for (int i = 0; i < servers.size(); ++i) urls.push_back(servers.url(i));
  auto recorder = std::make_unique<Recorder>(urls, a.out + "/server.jsonl");
  if (!recorder->ok()) {
    std::fprintf(stderr, "campaign: the recorder could not subscribe\n");
    return 2;
  }
  if (newer_features && !CreateBank(servers.url(0), a.out + "/bank-init", &error)) {
    std::fprintf(stderr, "campaign: %s\n", error.c_str());
    return 2;
  }
  {
    std::ofstream run(a.out + "/run.json");
    run << "{\"topology\":" << Quote(a.topology) << ",\"server\":" << Quote(version)
        << ",\"seconds\":" << a.seconds << ",\"workers\":" << a.workers << ",\"keys\":" << a.keys
        << ",\"seed\":" << a.seed << ",\"lease_ms\":" << a.lease_ms
        << ",\"margin_ms\":" << a.lease_ms / 5 << ",\"max_clock_skew_ms\":" << kClockSkewMs
        << ",\"limit_marker_ttl_ms\":1000"
        << ",\"ttl\":" << (newer_features ? "true" : "false")
        << ",\"fence\":" << (newer_features ? "true" : "false")
        << ",\"txn\":" << (newer_features ? "true" : "false");
    if (newer_features) {
      run << ",\"bank_keys\":" << kBankKeys << ",\"bank_total\":" << kBankKeys * kBankStart;
    }
    run << "}\n";
  }

  if (a.faults.count("partition") || a.faults.count("delay")) servers.UseRelays(a.workers);
  Workers workers(a, &servers);
  for (int w = 0; w < a.workers; ++w) {
    if (!workers.Spawn(w)) return 2;
  }

  // The nemesis.
  JsonLines nemesis_log(a.out + "/nemesis.jsonl");
  std::map<std::string, int> injected;
  std::vector<std::string> kinds;
  for (const auto& f : a.faults) {
    if (f == "leader" && !servers.r3()) continue;
    kinds.push_back(f);
  }
  const auto end = Clock::now() + std::chrono::seconds(a.seconds);
  std::exponential_distribution<double> gap(1.0 / std::max(1, a.fault_every_ms));
  auto log_fault = [&](const std::string& fault, const std::string& target,
                       const std::string& extra = "") {
    nemesis_log.Line("\"fault\":" + Quote(fault) + ",\"target\":" + Quote(target) +
                     ",\"t\":" + std::to_string(MonoNs()) + ",\"wall\":" +
                     std::to_string(WallNs()) + extra);
  };
  auto restart = [&](int i) {
    if (!servers.node(i).Start()) {
      std::fprintf(stderr, "campaign: node %d did not restart: %s\n", i,
                   servers.node(i).error().c_str());
    }
  };
  while (Clock::now() < end) {
    const auto wait = std::chrono::milliseconds(static_cast<int64_t>(gap(rng)) + 200);
    std::this_thread::sleep_until(std::min(end, Clock::now() + wait));
    if (Clock::now() >= end || kinds.empty()) continue;
    // Pauses come twice as often as the other faults, and mostly hit a
    // worker that holds the lock now: a paused holder is what the lock's
    // guarantees are about.
    std::vector<std::string> weighted = kinds;
    if (a.faults.count("pause")) weighted.push_back("pause");
    const std::string kind =
        weighted[std::uniform_int_distribution<size_t>(0, weighted.size() - 1)(rng)];
    int w = std::uniform_int_distribution<int>(0, a.workers - 1)(rng);
    if (kind == "pause" && rng() % 10 < 7) {
      for (int h = 0; h < a.workers; ++h) {
        if (std::ifstream(a.out + "/holding-" + std::to_string(h)).good()) w = h;
      }
    }
    const int node = std::uniform_int_distribution<int>(0, servers.size() - 1)(rng);
    if (kind == "kill") {
      log_fault("kill", "worker-" + std::to_string(w));
      workers.Kill(w);
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 900));
      workers.Spawn(w);
      log_fault("restart_worker", "worker-" + std::to_string(w));
    } else if (kind == "pause") {
      const pid_t p = workers.pid(w);
      if (p <= 0) continue;
      const int64_t from = MonoNs();
      kill(p, SIGSTOP);
      log_fault("pause", "worker-" + std::to_string(w));
      std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % (2 * a.lease_ms)));
      kill(p, SIGCONT);
      log_fault("resume", "worker-" + std::to_string(w),
                ",\"from_t\":" + std::to_string(from) + ",\"to_t\":" + std::to_string(MonoNs()));
    } else if (kind == "partition") {
      // Worker w loses every node at once; its connections stay open and
      // silent until the heal closes them.
      for (auto* relay : servers.RelaysOf(w)) relay->Cut();
      log_fault("partition", "worker-" + std::to_string(w));
      std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % (2 * a.lease_ms)));
      for (auto* relay : servers.RelaysOf(w)) relay->Heal();
      log_fault("heal", "worker-" + std::to_string(w));
    } else if (kind == "delay") {
      // A slow link: every byte between worker w and every node is held for
      // up to the lease; the delay lasts up to two leases.
      const auto by = std::chrono::milliseconds(20 + rng() % static_cast<uint64_t>(a.lease_ms));
      for (auto* relay : servers.RelaysOf(w)) relay->Delay(by);
      log_fault("delay", "worker-" + std::to_string(w),
                ",\"delay_ms\":" + std::to_string(by.count()));
      std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % (2 * a.lease_ms)));
      for (auto* relay : servers.RelaysOf(w)) relay->Delay(std::chrono::milliseconds(0));
      log_fault("undelay", "worker-" + std::to_string(w));
    } else if (kind == "restart") {
      log_fault("server_restart", "node-" + std::to_string(node));
      servers.node(node).Stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 900));
      restart(node);
    } else if (kind == "leader") {
      const int leader = servers.StreamLeader();
      if (leader < 0) continue;
      log_fault("leader_kill", "node-" + std::to_string(leader));
      servers.node(leader).Kill();
      std::this_thread::sleep_for(std::chrono::milliseconds(1000 + rng() % 2000));
      restart(leader);
    }
    ++injected[kind];
  }

  // Quiesce: every server up, every worker running; then stop the workers,
  // which sync and dump their replicas.
  for (int i = 0; i < servers.size(); ++i) {
    if (!servers.node(i).running()) restart(i);
  }
  std::this_thread::sleep_for(2s);
  // The workers stop creating TTL'd keys first (the marker file), and the
  // last of those expire, everywhere, before the final states are read.
  std::ofstream(a.out + "/no-ttl");
  if (newer_features) std::this_thread::sleep_for(std::chrono::milliseconds(4000 + kClockSkewMs));
  workers.StopAll(120s);
  // The recorder catches up with the stream's last message.
  const auto catch_up = Clock::now() + 30s;
  uint64_t stream_last = recorder->StreamLast();
  while (recorder->last() < stream_last && Clock::now() < catch_up) {
    std::this_thread::sleep_for(50ms);
    stream_last = recorder->StreamLast();
  }
  // The server's final state, only if the server answers for every key: a
  // cluster that stopped serving the stream must not pass for an empty one.
  // Without the file the checker says that convergence was not checked.
  {
    std::string body;
    std::vector<std::string> keys;
    for (int i = 0; i < a.keys; ++i) keys.push_back("c." + std::to_string(i));
    keys.push_back("fenced.0");
    for (int i = 0; i < kTtlKeys; ++i) keys.push_back("t." + std::to_string(i));
    for (int i = 0; i < kBankKeys; ++i) keys.push_back("b." + std::to_string(i));
    bool answered = true;
    const auto give_up = Clock::now() + 60s;
    for (const auto& key : keys) {
      std::string e;
      while (!(answered = recorder->LastOf(key, &e)) && Clock::now() < give_up) {
        std::this_thread::sleep_for(500ms);
      }
      if (!answered) break;
      if (e.empty()) continue;
      body += (body.empty() ? "" : ",") + Quote(key) + ":" + e;
    }
    if (answered) {
      std::ofstream(a.out + "/final-server.json") << "{" << body << "}\n";
    } else {
      std::fprintf(stderr, "campaign: the servers did not serve the bucket's stream at the end "
                           "of the run (for 60 s); its final state is unknown; their logs are "
                           "in node-<i>.log\n");
    }
  }
  // Every server's log, across its restarts, for the diagnosis of anything
  // the checker finds.
  for (int i = 0; i < servers.size(); ++i) {
    std::ofstream(a.out + "/node-" + std::to_string(i) + ".log") << servers.node(i).Log();
  }
  const uint64_t recorded = recorder->messages();
  recorder.reset();

  std::string faults;
  for (const auto& [kind, n] : injected) faults += " " + kind + "=" + std::to_string(n);
  std::printf("campaign: %s, %s, seed %llu, %d s, %d workers, %llu messages recorded; "
              "faults:%s\n",
              a.topology.c_str(), version.c_str(), static_cast<unsigned long long>(a.seed),
              a.seconds, a.workers,
              static_cast<unsigned long long>(recorded), faults.empty() ? " none" : faults.c_str());
  std::fflush(stdout);
  const std::string check =
      std::string(REVKV_PYTHON) + " " + REVKV_CAMPAIGN_CHECKER + " " + a.out;
  const int rc = std::system(check.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 3;
}
