// revkv_campaign_worker: one worker process of the fault campaign
// (tests/campaign/README in check_history.py's docstring has the history
// format). It embeds an Engine with its own replica directory, runs a random
// mix of operations over a small keyspace (on 2.12+ also transfers between
// bank accounts as transactions, and snapshot reads of them) until SIGTERM,
// and appends every invocation and completion to its history file as one
// JSON line each, written with one write(2) so that a kill -9 loses at most
// the line being written. On SIGTERM it finishes the operation in flight,
// syncs its replica and dumps it to final-replica-<W>.json.
//
// Usage: revkv_campaign_worker --out DIR --worker W --db DIR --servers URL[,URL...]
//          [--bucket B] [--keys N] [--seed S] [--lease-ms L] [--pace-us P]
//          [--ignore-discovered 0|1] [--clock-skew-ms MS]

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "revkv/revkv.h"
#include "tests/campaign/history_line.h"

namespace {

using namespace std::chrono_literals;
using revkv::campaign::MonoNs;
using revkv::campaign::Quote;
using revkv::campaign::WallNs;

std::atomic<bool> g_stop{false};

constexpr int kTtlKeys = 3;
constexpr std::chrono::seconds kTtl{1};
// The bank: accounts "b.0".."b.<kBankKeys-1>", which the runner creates with
// one transaction before the workers start (campaign.cc has the same
// count).
constexpr int kBankKeys = 4;

void OnTerm(int) { g_stop = true; }

const char* OpName(revkv::Operation op) {
  switch (op) {
    case revkv::Operation::kPut: return "PUT";
    case revkv::Operation::kDelete: return "DEL";
    case revkv::Operation::kPurge: return "PURGE";
  }
  return "PUT";
}

// The op id a value carries.
std::string ValueId(std::string_view value) {
  std::string id;
  revkv::campaign::ParseValue(value, &id, nullptr);
  return id;
}

// One JSON object per line, each written whole with one write(2).
class History {
 public:
  explicit History(const std::string& path)
      : fd_(open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {}
  ~History() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  // `fields` is the body of the object without braces, e.g. "\"ev\":\"ok\"".
  void Line(const std::string& fields) {
    std::string line = "{" + fields + ",\"t\":" + std::to_string(MonoNs()) +
                       ",\"wall\":" + std::to_string(WallNs()) + "}\n";
    std::lock_guard<std::mutex> lock(mu_);
    ssize_t n;
    do {
      n = write(fd_, line.data(), line.size());
    } while (n < 0 && errno == EINTR);
  }

 private:
  int fd_;
  std::mutex mu_;
};

struct Args {
  std::string out, db, bucket = "campaign";
  std::vector<std::string> servers;
  bool ignore_discovered = false;
  int worker = 0;
  int keys = 6;
  uint64_t seed = 1;
  int lease_ms = 1500;
  int pace_us = 0;  // a pause between operations, for long runs
  int clock_skew_ms = 500;  // NatsOptions::max_clock_skew (run.json has it too)
};

// What the server under the run offers the workload (decided from its
// version, the same way in every worker).
struct Features {
  // Per-key TTL on creates of the "t." keys (2.11+, a bucket with limit
  // markers: the runner creates it so).
  bool ttl = false;
  // The lock "lock.L" kept in the data bucket and its writes fenced by the
  // server (2.12+ for the compare-and-swap ones); else the lock "L" in the
  // locks bucket, with writes made only while lost() is false.
  bool fence = false;
  // Transfers between the bank's accounts as transactions (Bucket::Commit,
  // one atomic batch: 2.12+), and snapshot reads of every account
  // (GetMany).
  bool txn = false;
};

// A bank account's value: the op id that wrote it and the balance,
// "id=<id>;bal=<n>" (the recorder reads the id as for every value).
std::string BankValue(const std::string& id, long balance) {
  return "id=" + id + ";bal=" + std::to_string(balance);
}
// The balance a bank account's value holds; false if it holds none.
bool BankBalance(std::string_view value, long* balance) {
  const size_t at = value.find(";bal=");
  if (at == std::string_view::npos) return false;
  const std::string digits(value.substr(at + 5));
  char* end = nullptr;
  *balance = std::strtol(digits.c_str(), &end, 10);
  return !digits.empty() && *end == '\0';
}
std::string BankKey(int i) { return "b." + std::to_string(i); }

class Worker {
 public:
  Worker(const Args& args, const Features& features, revkv::Bucket* bucket,
         revkv::Engine* engine, History* history, int incarnation)
      : a_(args), f_(features), bucket_(bucket), engine_(engine), h_(history),
        inc_(incarnation),
        rng_(args.seed * 7919 + static_cast<uint64_t>(incarnation)) {}

  void Run() {
    StartWatch();
    // Lock sections run on a thread of their own, back to back, so that a
    // pause of this process often finds it holding the lock.
    std::thread sections([this] {
      while (!g_stop.load()) {
        LockedSection();
        std::this_thread::sleep_for(std::chrono::milliseconds(Pick(200)));
      }
    });
    while (!g_stop.load()) {
      Step();
      if (a_.pace_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(a_.pace_us));
    }
    sections.join();
    if (watch_) {
      watch_->Cancel();
      h_->Line("\"ev\":\"watch_end\",\"w\":" + std::to_string(a_.worker) + ",\"inc\":" +
               std::to_string(inc_) + ",\"watch\":" + Quote(watch_id_) +
               ",\"last_rev\":" + std::to_string(watch_->last_revision()));
    }
  }

 private:
  std::string NextId() {
    return std::to_string(a_.worker) + "-" + std::to_string(inc_) + "-" + std::to_string(++seq_);
  }
  std::string Key() { return "c." + std::to_string(Pick(a_.keys)); }
  int Pick(int n) {
    std::lock_guard<std::mutex> lock(rng_mu_);
    return std::uniform_int_distribution<int>(0, n - 1)(rng_);
  }
  std::string Common(const std::string& id, const char* op, const std::string& key) {
    return "\"id\":" + Quote(id) + ",\"w\":" + std::to_string(a_.worker) +
           ",\"inc\":" + std::to_string(inc_) + ",\"op\":\"" + op + "\",\"key\":" + Quote(key);
  }
  void Invoke(const std::string& fields) { h_->Line("\"ev\":\"invoke\"," + fields); }

  // The completion of a write that returned `r`.
  void WriteDone(const std::string& id, const revkv::Result<uint64_t>& r) {
    if (r.ok()) {
      const bool applied = bucket_->LastRevision() >= *r;
      h_->Line("\"ev\":\"ok\",\"id\":" + Quote(id) + ",\"rev\":" + std::to_string(*r) +
               ",\"applied\":" + (applied ? "true" : "false"));
      return;
    }
    Fail(id, r.status());
  }
  void Fail(const std::string& id, const revkv::Status& s) {
    const bool unknown = s.IsTimeout() || s.IsUnavailable();
    std::string fields = std::string("\"ev\":\"") + (unknown ? "unknown" : "fail") +
                         "\",\"id\":" + Quote(id) + ",\"code\":\"" +
                         std::string(revkv::CodeName(s.code())) + "\"";
    if (s.IsConflict() && s.revision_known()) fields += ",\"rev\":" + std::to_string(s.revision());
    h_->Line(fields + ",\"msg\":" + Quote(s.message().substr(0, 200)));
  }
  std::string Value(const std::string& id, uint64_t token = 0) {
    return "id=" + id + ";token=" + std::to_string(token);
  }

  void Step() {
    if (f_.txn) {
      const int bank = Pick(100);
      if (bank < 10) return Transfer();
      if (bank < 15) return (void)Snapshot();
    }
    if (f_.ttl && Pick(10) == 0) {
      // The runner asks for no more TTL'd creates before the final states.
      if (Pick(2) == 0 && !std::ifstream(a_.out + "/no-ttl").good()) return CreateWithTtl();
      return Get(TtlKey());
    }
    const int dice = Pick(100);
    if (dice < 5) return AsyncBurst();
    if (dice < 15) return Put();
    if (dice < 40) return Get();
    if (dice < 60) return Cas();
    if (dice < 65) return Create();
    if (dice < 75) return Delete();
    return UpdateWithRetry();
  }

  // A few pipelined writes in flight at once (PutAsync, UpdateAsync,
  // CreateAsync, DeleteAsync), each logged as its synchronous kind with
  // "async":true; each completes when its future does.
  void AsyncBurst() {
    std::vector<std::pair<std::string, std::future<revkv::Result<uint64_t>>>> inflight;
    const int n = 2 + Pick(5);
    for (int i = 0; i < n; ++i) {
      const std::string key = Key();
      const int kind = Pick(4);
      if (kind == 1) {
        auto seen = Read(key);
        if (!seen) continue;
        const std::string id = NextId();
        Invoke(Common(id, "cas", key) + ",\"exp\":" + std::to_string(seen->revision) +
               ",\"async\":true");
        inflight.emplace_back(id, bucket_->UpdateAsync(key, Value(id), seen->revision));
        continue;
      }
      const std::string id = NextId();
      const char* op = kind == 0 ? "put" : kind == 2 ? "create" : "delete";
      Invoke(Common(id, op, key) + ",\"async\":true");
      inflight.emplace_back(id, kind == 0   ? bucket_->PutAsync(key, Value(id))
                                : kind == 2 ? bucket_->CreateAsync(key, Value(id))
                                            : bucket_->DeleteAsync(key));
    }
    for (auto& [id, done] : inflight) WriteDone(id, done.get());
  }

  void Put() {
    const std::string id = NextId(), key = Key();
    Invoke(Common(id, "put", key));
    WriteDone(id, bucket_->Put(key, Value(id)));
  }

  // Reads `key`; logs it as op `id` when given.
  std::optional<revkv::Entry> Read(const std::string& key) {
    const std::string id = NextId();
    Invoke(Common(id, "get", key));
    auto e = bucket_->GetEntry(key);
    if (e.ok()) {
      h_->Line("\"ev\":\"ok\",\"id\":" + Quote(id) + ",\"rev\":" + std::to_string(e->revision) +
               ",\"value_id\":" + Quote(ValueId(e->value)));
      return *e;
    }
    if (e.status().IsNotFound()) {
      h_->Line("\"ev\":\"fail\",\"id\":" + Quote(id) + ",\"code\":\"NotFound\",\"rev\":" +
               std::to_string(e.status().revision()));
      revkv::Entry tomb;
      tomb.key = key;
      tomb.revision = e.status().revision();
      tomb.operation = revkv::Operation::kDelete;
      return tomb;
    }
    Fail(id, e.status());
    return std::nullopt;
  }

  void Get() { Read(Key()); }
  void Get(const std::string& key) { Read(key); }

  // Keys written only by creates with a TTL, so that expiry decides their
  // state; the watch on "c.>" does not see them.
  std::string TtlKey() { return "t." + std::to_string(Pick(kTtlKeys)); }
  void CreateWithTtl() {
    const std::string id = NextId(), key = TtlKey();
    Invoke(Common(id, "create", key) + ",\"ttl_ms\":" + std::to_string(kTtl.count() * 1000));
    WriteDone(id, bucket_->Create(key, Value(id), {.ttl = kTtl}));
  }

  void Cas() {
    const std::string key = Key();
    auto seen = Read(key);
    if (!seen) return;
    const std::string id = NextId();
    Invoke(Common(id, "cas", key) + ",\"exp\":" + std::to_string(seen->revision));
    WriteDone(id, bucket_->Update(key, Value(id), seen->revision));
  }

  void Create() {
    const std::string id = NextId(), key = Key();
    Invoke(Common(id, "create", key));
    WriteDone(id, bucket_->Create(key, Value(id)));
  }

  void Delete() {
    const std::string key = Key();
    std::optional<uint64_t> expected;
    if (Pick(2) == 0) {
      auto seen = Read(key);
      if (!seen) return;
      expected = seen->revision;
    }
    const std::string id = NextId();
    Invoke(Common(id, "delete", key) +
           (expected ? ",\"exp\":" + std::to_string(*expected) : std::string()));
    WriteDone(id, bucket_->Delete(key, expected));
  }

  void UpdateWithRetry() {
    const std::string id = NextId(), key = Key();
    Invoke(Common(id, "uwr", key));
    revkv::RetryPolicy policy;
    policy.max_attempts = 20;
    policy.deadline = 3s;
    const std::string value = Value(id);
    auto r = bucket_->UpdateWithRetry(
        key, [&](const std::optional<std::string>&) { return std::optional<std::string>(value); },
        policy);
    if (r.ok()) {
      WriteDone(id, revkv::Result<uint64_t>(r->revision));
    } else {
      Fail(id, r.status());
    }
  }

  // A snapshot read of every bank account (GetMany): the snapshot's
  // revision, and per account its revision, balance (null: absent or not a
  // balance) and op id. Returns the snapshot when it was read.
  std::optional<revkv::KeysSnapshot> Snapshot() {
    std::vector<std::string> keys;
    for (int i = 0; i < kBankKeys; ++i) keys.push_back(BankKey(i));
    const std::string id = NextId();
    std::string quoted;
    for (const auto& k : keys) quoted += (quoted.empty() ? "" : ",") + Quote(k);
    Invoke("\"id\":" + Quote(id) + ",\"w\":" + std::to_string(a_.worker) + ",\"inc\":" +
           std::to_string(inc_) + ",\"op\":\"snapshot\",\"keys\":[" + quoted + "]");
    auto s = bucket_->GetMany(keys);
    if (!s.ok()) {
      Fail(id, s.status());
      return std::nullopt;
    }
    std::string revs, vals, ids;
    for (const auto& k : s->keys) {
      long balance = 0;
      const bool known = k.entry && BankBalance(k.entry->value, &balance);
      revs += (revs.empty() ? "" : ",") + std::to_string(k.revision);
      vals += std::string(vals.empty() ? "" : ",") +
              (known ? std::to_string(balance) : std::string("null"));
      ids += std::string(ids.empty() ? "" : ",") +
             (k.entry ? Quote(ValueId(k.entry->value)) : std::string("null"));
    }
    h_->Line("\"ev\":\"ok\",\"id\":" + Quote(id) + ",\"rev\":" + std::to_string(s->revision) +
             ",\"revs\":[" + revs + "],\"vals\":[" + vals + "],\"value_ids\":[" + ids + "]");
    return std::move(*s);
  }

  // Moves a random amount (balances may go negative) between two accounts
  // read by a snapshot: one transaction of two Updates expecting the
  // revisions read. Logged with the keys, expected revisions, amount and
  // new balances; on success with the revisions written.
  void Transfer() {
    auto seen = Snapshot();
    if (!seen) return;
    const int from = Pick(kBankKeys);
    const int to = (from + 1 + Pick(kBankKeys - 1)) % kBankKeys;
    const auto& kf = seen->keys[static_cast<size_t>(from)];
    const auto& kt = seen->keys[static_cast<size_t>(to)];
    long bf = 0, bt = 0;
    if (!kf.entry || !kt.entry || !BankBalance(kf.entry->value, &bf) ||
        !BankBalance(kt.entry->value, &bt)) {
      return;  // the replica has not applied the bank's creation yet
    }
    const long amount = 1 + Pick(20);
    const std::string id = NextId();
    Invoke("\"id\":" + Quote(id) + ",\"w\":" + std::to_string(a_.worker) + ",\"inc\":" +
           std::to_string(inc_) + ",\"op\":\"transfer\",\"keys\":[" + Quote(kf.key) + "," +
           Quote(kt.key) + "],\"exp\":[" + std::to_string(kf.revision) + "," +
           std::to_string(kt.revision) + "],\"amount\":" + std::to_string(amount) +
           ",\"vals\":[" + std::to_string(bf - amount) + "," + std::to_string(bt + amount) +
           "]");
    revkv::Txn txn;
    txn.ops.push_back(revkv::TxnOp::Update(kf.key, BankValue(id, bf - amount), kf.revision));
    txn.ops.push_back(revkv::TxnOp::Update(kt.key, BankValue(id, bt + amount), kt.revision));
    auto r = bucket_->Commit(txn);
    if (!r.ok()) return Fail(id, r.status());
    std::string revs;
    for (uint64_t rev : r->revisions) revs += (revs.empty() ? "" : ",") + std::to_string(rev);
    const bool applied = bucket_->LastRevision() >= r->revision;
    h_->Line("\"ev\":\"ok\",\"id\":" + Quote(id) + ",\"rev\":" + std::to_string(r->revision) +
             ",\"revs\":[" + revs + "],\"applied\":" + (applied ? "true" : "false"));
  }

  // Acquire the lock -> Sync -> a few writes of "fenced.0" with the token ->
  // release. Fenced (f_.fence): the lock "lock.L" lives in the data bucket,
  // the writes alternate between a fenced Put and a fenced CAS, and they
  // are made whatever lost() says, since the server refuses those of a
  // holder that lost the lock. Unfenced: the lock "L" in the locks bucket,
  // CAS writes made only while lost() is false.
  void LockedSection() {
    const std::string lock_name = f_.fence ? "lock.L" : "L", key = "fenced.0";
    const std::string acq = NextId();
    Invoke(Common(acq, "acquire", key) + ",\"lock\":" + Quote(lock_name));
    revkv::LockOptions options;
    if (f_.fence) options.locks_bucket = a_.bucket;
    auto lock = engine_->Acquire(lock_name, std::chrono::milliseconds(a_.lease_ms), 2s, options);
    if (!lock.ok()) {
      Fail(acq, lock.status());
      return;
    }
    const uint64_t token = (*lock)->fencing_token();
    h_->Line("\"ev\":\"ok\",\"id\":" + Quote(acq) + ",\"rev\":" + std::to_string(token));
    // Tells the nemesis that pausing this worker now pauses a lock holder.
    const std::string holding = a_.out + "/holding-" + std::to_string(a_.worker);
    std::ofstream(holding) << token << "\n";
    const int w = a_.worker, inc = inc_;
    History* h = h_;
    (*lock)->on_lost([h, w, inc, token, lock_name](const revkv::Status&) {
      h->Line("\"ev\":\"lock_lost\",\"w\":" + std::to_string(w) + ",\"inc\":" +
              std::to_string(inc) + ",\"lock\":" + Quote(lock_name) +
              ",\"token\":" + std::to_string(token));
    });
    // The section lasts up to about a lease, with a few writes: a holder
    // paused in here must not write after it lost the lock, by its own
    // check of lost() or by the server's fence.
    const std::string held = ",\"lock\":" + Quote(lock_name) + ",\"token\":" + std::to_string(token);
    const revkv::WriteOptions fenced{.fence = (*lock)->fence()};
    if (bucket_->Sync(2s).ok()) {
      const int writes = 2 + Pick(4);
      for (int i = 0; i < writes && !g_stop.load(); ++i) {
        if (!f_.fence && (*lock)->lost()) break;
        if (f_.fence && Pick(2) == 0) {
          const std::string id = NextId();
          Invoke(Common(id, "fenced_put", key) + held);
          WriteDone(id, bucket_->Put(key, Value(id, token), fenced));
        } else {
          auto seen = Read(key);
          if (!seen || (!f_.fence && (*lock)->lost())) break;
          const std::string id = NextId();
          Invoke(Common(id, "locked_write", key) + held + ",\"exp\":" +
                 std::to_string(seen->revision) + (f_.fence ? ",\"fenced\":true" : ""));
          WriteDone(id, bucket_->Update(key, Value(id, token), seen->revision,
                                        f_.fence ? fenced : revkv::WriteOptions{}));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(Pick(a_.lease_ms / 3 + 1)));
      }
    }
    const std::string rel = NextId();
    Invoke(Common(rel, "release", key) + held);
    std::remove(holding.c_str());
    revkv::Status released = (*lock)->Release();
    if (released.ok()) {
      h_->Line("\"ev\":\"ok\",\"id\":" + Quote(rel));
    } else {
      Fail(rel, released);
    }
  }

  void StartWatch() {
    watch_id_ = std::to_string(a_.worker) + "-" + std::to_string(inc_);
    revkv::WatchOptions o;
    o.start = revkv::WatchStart::kFromRevision;
    o.from_revision = bucket_->LastRevision() + 1;
    const int w = a_.worker, inc = inc_;
    History* h = h_;
    const std::string wid = watch_id_;
    // Logged first: entries may arrive before Watch returns.
    h_->Line("\"ev\":\"watch_start\",\"w\":" + std::to_string(w) + ",\"inc\":" +
             std::to_string(inc) + ",\"watch\":" + Quote(wid) +
             ",\"filter\":\"c.>\",\"from_rev\":" + std::to_string(o.from_revision));
    auto watch = bucket_->Watch("c.>", o, [h, w, inc, wid](const revkv::Result<revkv::Entry>& e) {
      if (!e.ok()) return;
      h->Line("\"ev\":\"watch\",\"w\":" + std::to_string(w) + ",\"inc\":" + std::to_string(inc) +
              ",\"watch\":" + Quote(wid) + ",\"key\":" + Quote(e->key) +
              ",\"rev\":" + std::to_string(e->revision) + ",\"op\":\"" + OpName(e->operation) +
              "\",\"value_id\":" + (e->is_tombstone() ? "null" : Quote(ValueId(e->value))));
    });
    if (!watch.ok()) {
      h_->Line("\"ev\":\"watch_end\",\"w\":" + std::to_string(w) + ",\"inc\":" +
               std::to_string(inc) + ",\"watch\":" + Quote(wid) +
               ",\"last_rev\":" + std::to_string(o.from_revision - 1));
      return;
    }
    watch_ = std::move(*watch);
  }

  const Args& a_;
  const Features f_;
  revkv::Bucket* bucket_;
  revkv::Engine* engine_;
  History* h_;
  const int inc_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;  // GUARDED_BY(rng_mu_)
  std::atomic<uint64_t> seq_{0};
  std::string watch_id_;
  std::unique_ptr<revkv::Watcher> watch_;
};

// This worker's restart count, kept next to its replica.
int NextIncarnation(const std::string& db) {
  const std::string path = db + ".incarnation";
  int inc = 0;
  std::ifstream(path) >> inc;
  ++inc;
  std::ofstream(path) << inc;
  return inc;
}

// The replica's final state: every key of the bucket's keyspace, as
// final-replica-<W>.json.
void DumpReplica(revkv::Bucket& bucket, const Args& a) {
  std::string out = "{";
  bool first = true;
  std::vector<std::string> keys;
  for (int i = 0; i < a.keys; ++i) keys.push_back("c." + std::to_string(i));
  keys.push_back("fenced.0");
  for (int i = 0; i < kTtlKeys; ++i) keys.push_back("t." + std::to_string(i));
  for (int i = 0; i < kBankKeys; ++i) keys.push_back(BankKey(i));
  for (const auto& key : keys) {
    auto e = bucket.GetEntry(key);
    std::string entry;
    if (e.ok()) {
      entry = "{\"rev\":" + std::to_string(e->revision) + ",\"op\":\"PUT\",\"value_id\":" +
              Quote(ValueId(e->value)) + ",\"created\":" + std::to_string(e->created_ns) + "}";
    } else if (e.status().IsNotFound() && e.status().revision() > 0) {
      auto hist = bucket.History(key);
      const bool known = hist.ok() && !hist->empty();
      const char* op = known ? OpName(hist->back().operation) : "DEL";
      entry = "{\"rev\":" + std::to_string(e.status().revision()) + ",\"op\":\"" + op +
              "\",\"value_id\":null" +
              (known ? ",\"created\":" + std::to_string(hist->back().created_ns) : "") + "}";
    } else {
      continue;
    }
    out += std::string(first ? "" : ",") + Quote(key) + ":" + entry;
    first = false;
  }
  out += "}\n";
  std::ofstream(a.out + "/final-replica-" + std::to_string(a.worker) + ".json") << out;
}

// Whether a version such as "2.12.1" is at least major.minor.
bool AtLeast(const std::string& version, int major, int minor) {
  int ma = 0, mi = 0;
  if (std::sscanf(version.c_str(), "%d.%d", &ma, &mi) != 2) return false;
  return ma > major || (ma == major && mi >= minor);
}

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--out") a->out = v;
    else if (k == "--db") a->db = v;
    else if (k == "--bucket") a->bucket = v;
    else if (k == "--worker") a->worker = std::atoi(v.c_str());
    else if (k == "--keys") a->keys = std::atoi(v.c_str());
    else if (k == "--seed") a->seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--lease-ms") a->lease_ms = std::atoi(v.c_str());
    else if (k == "--pace-us") a->pace_us = std::atoi(v.c_str());
    else if (k == "--clock-skew-ms") a->clock_skew_ms = std::atoi(v.c_str());
    else if (k == "--ignore-discovered") a->ignore_discovered = v == "1";
    else if (k == "--servers") {
      std::stringstream ss(v);
      std::string url;
      while (std::getline(ss, url, ',')) a->servers.push_back(url);
    } else {
      return false;
    }
  }
  return !a->out.empty() && !a->db.empty() && !a->servers.empty() && a->keys > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    std::fprintf(stderr, "usage: %s --out DIR --worker W --db DIR --servers URL[,URL...] "
                         "[--bucket B] [--keys N] [--seed S] [--lease-ms L] [--pace-us P] "
                         "[--ignore-discovered 0|1] [--clock-skew-ms MS]\n", argv[0]);
    return 2;
  }
  signal(SIGTERM, OnTerm);
  const int inc = NextIncarnation(a.db);
  History history(a.out + "/worker-" + std::to_string(a.worker) + ".jsonl");
  if (!history.ok()) {
    std::perror("history file");
    return 1;
  }
  revkv::Options o;
  o.path = a.db;
  o.nats.servers = a.servers;
  // Behind relays, the nodes a cluster advertises would bypass them.
  o.nats.ignore_discovered_servers = a.ignore_discovered;
  o.nats.write_timeout = 2s;
  o.nats.max_clock_skew = std::chrono::milliseconds(a.clock_skew_ms);
  // Even workers read through a small cache of latest entries (16 KiB: a
  // few entries per shard, so entries are evicted and refilled all along),
  // which the checker's read checks then cover; odd ones read the store.
  if (a.worker % 2 == 0) o.entry_cache_bytes = 16 << 10;
  // The server may be down while this worker restarts: keep trying.
  std::unique_ptr<revkv::Engine> engine;
  std::shared_ptr<revkv::Bucket> bucket;
  while (!g_stop.load()) {
    auto e = revkv::Engine::Open(o);
    if (e.ok()) {
      auto b = (*e)->OpenBucket(a.bucket);
      if (b.ok()) {
        engine = std::move(*e);
        bucket = *b;
        break;
      }
      std::fprintf(stderr, "worker %d: %s\n", a.worker, b.status().ToString().c_str());
    } else {
      std::fprintf(stderr, "worker %d: %s\n", a.worker, e.status().ToString().c_str());
    }
    std::this_thread::sleep_for(200ms);
  }
  if (!bucket) return 0;
  // The server's version decides the workload; the server may be down
  // while this worker starts.
  revkv::BucketStatus status = bucket->GetStatus();
  while (status.server_version.empty() && !g_stop.load()) {
    std::this_thread::sleep_for(200ms);
    status = bucket->GetStatus();
  }
  Features features;
  features.ttl = status.allows_ttl;
  features.fence = AtLeast(status.server_version, 2, 12);
  features.txn = AtLeast(status.server_version, 2, 12);
  {
    Worker w(a, features, bucket.get(), engine.get(), &history, inc);
    w.Run();
  }
  // Stopped writing. The final state is read only once every worker has
  // stopped (the runner then creates <out>/dump), and after catching up.
  const std::string me = a.out + "/stopped-" + std::to_string(a.worker);
  std::ofstream(me) << inc << "\n";
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (!std::ifstream(a.out + "/dump").good() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(20ms);
  }
  for (int i = 0; i < 20 && !bucket->Sync(5s).ok(); ++i) std::this_thread::sleep_for(500ms);
  // Own writes applied ahead of the consumer take the server's time when it
  // delivers them, which Sync does not wait for; every writer has stopped,
  // so those deliveries are all on their way.
  std::this_thread::sleep_for(500ms);
  DumpReplica(*bucket, a);
  return 0;
}
