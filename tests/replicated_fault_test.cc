// Faults with real nats-server processes:
//  - the server is stopped (SIGTERM) or killed (SIGKILL) in the middle of a
//    concurrent write load and restarted on the same port: no acknowledged
//    write is lost or doubled, failed writes fail with clear errors, and
//    every replica, a reading-only one included, converges on the server;
//  - permissions the server denies surface as PermissionDenied within a
//    bounded time, never as a hang or a generic error.

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::MsSince;
using testing::NatsServer;
using testing::TempDir;

// ---------------------------------------------------------------------------
// What the server holds, read with nats.c's own KV API as an independent
// client.

struct ServerEntry {
  uint64_t revision = 0;
  std::string value;
  Operation operation = Operation::kPut;
  bool operator==(const ServerEntry&) const = default;
};

struct ServerState {
  natsStatus status = NATS_OK;
  std::string error;
  uint64_t last_sequence = 0;
  std::map<std::string, std::vector<ServerEntry>> history;  // key -> oldest first
};

ServerState ReadServer(const std::string& url, const std::string& bucket) {
  ServerState out;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  kvStore* kv = nullptr;
  auto fail = [&](natsStatus s, const std::string& what) {
    out.status = s;
    const char* detail = nats_GetLastError(nullptr);
    out.error = what + ": " + natsStatus_GetText(s) + " (" + (detail ? detail : "") + ")";
  };
  natsStatus s = testing::ConnectClient(url, &nc, &js);
  if (s != NATS_OK) fail(s, "connecting");
  if (s == NATS_OK) {
    jsStreamInfo* si = nullptr;
    const std::string stream = "KV_" + bucket;
    s = js_GetStreamInfo(&si, js, stream.c_str(), nullptr, nullptr);
    if (s == NATS_OK) {
      out.last_sequence = si->State.LastSeq;
      jsStreamInfo_Destroy(si);
    } else {
      fail(s, "reading the stream info");
    }
  }
  if (s == NATS_OK && (s = js_KeyValue(&kv, js, bucket.c_str())) != NATS_OK) {
    fail(s, "binding the bucket");
  }
  kvKeysList keys{};
  if (s == NATS_OK && (s = kvStore_Keys(&keys, kv, nullptr)) != NATS_OK) {
    fail(s, "listing the keys");
  }
  for (int i = 0; s == NATS_OK && i < keys.Count; ++i) {
    kvEntryList list{};
    s = kvStore_History(&list, kv, keys.Keys[i], nullptr);
    if (s != NATS_OK) {
      fail(s, std::string("reading the history of ") + keys.Keys[i]);
      break;
    }
    auto& entries = out.history[keys.Keys[i]];
    for (int j = 0; j < list.Count; ++j) {
      kvEntry* e = list.Entries[j];
      ServerEntry se;
      se.revision = kvEntry_Revision(e);
      const auto* data = static_cast<const char*>(kvEntry_Value(e));
      if (data != nullptr) se.value.assign(data, static_cast<size_t>(kvEntry_ValueLen(e)));
      se.operation = kvEntry_Operation(e) == kvOp_Delete  ? Operation::kDelete
                     : kvEntry_Operation(e) == kvOp_Purge ? Operation::kPurge
                                                          : Operation::kPut;
      entries.push_back(std::move(se));
    }
    kvEntryList_Destroy(&list);
  }
  kvKeysList_Destroy(&keys);
  kvStore_Destroy(kv);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return out;
}

// ---------------------------------------------------------------------------
// Server restart under concurrent write load.

struct Ack {
  std::string key;
  std::string value;
  uint64_t revision = 0;
  bool after_restart = false;
};

struct Failure {
  std::string key;
  Status status;
};

struct WriterLog {
  std::vector<Ack> acks;
  std::vector<Failure> failures;
  std::atomic<int> acks_before{0};
  std::atomic<int> acks_after{0};
};

enum Phase : int { kBefore = 0, kDown = 1, kAfter = 2 };

// Each key takes at most this many writes, so a bucket keeping this much
// history keeps every write for the final comparison.
constexpr int kWritesPerKey = 16;

class RestartUnderLoad {
 public:
  explicit RestartUnderLoad(NatsServer& server) : server_(server) {}

  std::unique_ptr<Engine> OpenEngine(TempDir& dir) {
    Options o;
    o.path = dir.path();
    o.nats.servers = {server_.url()};
    o.nats.write_timeout = 1s;
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // Blind writes: Put, a new key every kWritesPerKey writes.
  void PutWriter(Bucket* bucket, int id, WriterLog* log) {
    for (int i = 0; !stop_.load(); ++i) {
      const std::string key = "put.w" + std::to_string(id) + "." + std::to_string(i / kWritesPerKey);
      const std::string value = "w" + std::to_string(id) + "-" + std::to_string(i);
      Record(bucket->Put(key, value), key, value, log);
    }
  }

  // Compare-and-swap chains: Create a key, then Update it with the revision
  // of the last acknowledged write. A failed write may or may not have
  // reached the server, so the chain moves on to a fresh key after one.
  void CasWriter(Bucket* bucket, int id, WriterLog* log) {
    int chain = 0;
    int length = 0;
    uint64_t last = 0;
    for (int i = 0; !stop_.load(); ++i) {
      const std::string key = "cas.w" + std::to_string(id) + "." + std::to_string(chain);
      const std::string value = "w" + std::to_string(id) + "-" + std::to_string(i);
      auto r = length == 0 ? bucket->Create(key, value) : bucket->Update(key, value, last);
      if (r.ok()) {
        last = *r;
        ++length;
      }
      if (!r.ok() || length == kWritesPerKey) {
        ++chain;
        length = 0;
      }
      Record(r, key, value, log);
    }
  }

  void Record(const Result<uint64_t>& r, const std::string& key, const std::string& value,
              WriterLog* log) {
    const bool after = phase_.load() == kAfter;
    if (r.ok()) {
      log->acks.push_back({key, value, *r, after});
      (after ? log->acks_after : log->acks_before)++;
    } else {
      log->failures.push_back({key, r.status()});
    }
  }

  // Waits until every writer has `n` acknowledged writes in the phase.
  bool WaitForAcks(const std::vector<std::unique_ptr<WriterLog>>& logs, bool after, int n,
                   std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      bool all = true;
      for (const auto& l : logs) all &= (after ? l->acks_after : l->acks_before).load() >= n;
      if (all) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  void Run(bool kill) {
    TempDir dir_a, dir_b, dir_c;
    auto a = OpenEngine(dir_a);
    auto b = OpenEngine(dir_b);
    auto c = OpenEngine(dir_c);  // reads only
    ASSERT_TRUE(a && b && c);
    auto ba = a->OpenBucket("load", {.history = kWritesPerKey});
    auto bb = b->OpenBucket("load");
    auto bc = c->OpenBucket("load");
    ASSERT_TRUE(ba.ok() && bb.ok() && bc.ok());
    ASSERT_TRUE((*ba)->Put("seen.by.reader", "before").ok());
    ASSERT_TRUE((*bc)->Sync(5s).ok());

    // Two writers per engine, one blind and one compare-and-swap.
    std::vector<std::unique_ptr<WriterLog>> logs;
    for (int i = 0; i < 4; ++i) logs.push_back(std::make_unique<WriterLog>());
    std::vector<std::thread> writers;
    writers.emplace_back([&] { PutWriter(ba->get(), 0, logs[0].get()); });
    writers.emplace_back([&] { CasWriter(ba->get(), 1, logs[1].get()); });
    writers.emplace_back([&] { PutWriter(bb->get(), 2, logs[2].get()); });
    writers.emplace_back([&] { CasWriter(bb->get(), 3, logs[3].get()); });
    // The reading engine reads all along; its reads never fail.
    std::atomic<int> reads_while_down{0};
    std::atomic<int> read_errors{0};
    std::string read_error;
    std::mutex read_error_mu;
    std::thread reader([&] {
      while (!stop_.load()) {
        const bool down = phase_.load() == kDown;
        auto v = (*bc)->Get("seen.by.reader");
        auto keys = (*bc)->Keys("put.>");
        if (!v.ok() || *v != "before" || !keys.ok()) {
          ++read_errors;
          std::lock_guard<std::mutex> lock(read_error_mu);
          read_error = !v.ok() ? v.status().ToString() : keys.status().ToString();
        } else if (down) {
          ++reads_while_down;
        }
        std::this_thread::sleep_for(2ms);
      }
    });
    auto finish = [&] {
      stop_ = true;
      for (auto& t : writers) t.join();
      reader.join();
    };

    const bool loaded = WaitForAcks(logs, false, 100, 20s);
    const pid_t old_pid = server_.pid();
    const int port = server_.port();
    phase_ = kDown;
    if (kill) {
      server_.Kill();
    } else {
      server_.Stop();
    }
    std::this_thread::sleep_for(500ms);
    const bool restarted = server_.Start();
    phase_ = kAfter;
    const bool resumed = restarted && WaitForAcks(logs, true, 100, 30s);
    finish();
    ASSERT_TRUE(loaded) << "the writers did not get going before the restart";
    ASSERT_TRUE(restarted) << server_.error();
    EXPECT_EQ(server_.port(), port);
    EXPECT_NE(server_.pid(), old_pid);
    ASSERT_TRUE(resumed) << "the writers did not resume within 30 s of the restart";
    EXPECT_EQ(read_errors.load(), 0) << read_error;
    EXPECT_GT(reads_while_down.load(), 0) << "reads must keep working from the replica";

    // Failed writes failed clearly: the server was unreachable or did not
    // answer in time.
    size_t failures = 0;
    std::map<std::string, int> failure_codes;
    for (const auto& l : logs) {
      for (const auto& f : l->failures) {
        ++failures;
        ++failure_codes[std::string(CodeName(f.status.code()))];
        EXPECT_TRUE(f.status.IsUnavailable() || f.status.IsTimeout())
            << f.key << ": " << f.status.ToString();
        EXPECT_FALSE(f.status.message().empty());
      }
    }

    // Every engine catches up with the server.
    for (Bucket* bucket : {ba->get(), bb->get(), bc->get()}) {
      Status s = bucket->Sync(15s);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    ServerState server = ReadServer(server_.url(), "load");
    ASSERT_EQ(server.status, NATS_OK) << server.error;

    // Acknowledged revisions are unique, and every acknowledged write is on
    // the server at its revision with its value.
    std::set<uint64_t> acked_revisions;
    size_t acks = 0;
    for (const auto& l : logs) {
      for (const auto& ack : l->acks) {
        ++acks;
        EXPECT_TRUE(acked_revisions.insert(ack.revision).second)
            << "revision " << ack.revision << " acknowledged twice";
        const auto& h = server.history[ack.key];
        bool found = false;
        for (const auto& e : h) found |= e.revision == ack.revision && e.value == ack.value;
        EXPECT_TRUE(found) << "acknowledged write " << ack.key << "=" << ack.value << " at "
                           << ack.revision << " is not on the server";
      }
    }

    for (Bucket* bucket : {ba->get(), bb->get(), bc->get()}) {
      SCOPED_TRACE(bucket == ba->get() ? "engine A" : bucket == bb->get() ? "engine B" : "reader C");
      // The applied revision is the stream's last sequence.
      EXPECT_EQ(bucket->LastRevision(), server.last_sequence);
      // Key by key, the replica holds what the server holds: revisions,
      // values and operations.
      auto keys = bucket->Keys(">");
      ASSERT_TRUE(keys.ok());
      EXPECT_EQ(keys->size(), server.history.size());
      for (const auto& [key, entries] : server.history) {
        auto h = bucket->History(key);
        ASSERT_TRUE(h.ok()) << key << ": " << h.status().ToString();
        std::vector<ServerEntry> local;
        for (const auto& e : *h) local.push_back({e.revision, e.value, e.operation});
        EXPECT_EQ(local, entries) << key;
      }
      // No revision and no written value appears twice in the replica: a
      // write is never applied, or sent, twice.
      auto all = bucket->ChangesSince(0, 1'000'000);
      ASSERT_TRUE(all.ok());
      std::set<uint64_t> revisions;
      std::set<std::string> values;
      for (const auto& e : *all) {
        EXPECT_TRUE(revisions.insert(e.revision).second) << "revision " << e.revision << " twice";
        EXPECT_TRUE(values.insert(e.value).second) << "value " << e.value << " written twice";
      }
      // Every acknowledged write is in the replica's history.
      for (const auto& l : logs) {
        for (const auto& ack : l->acks) {
          auto h = bucket->History(ack.key);
          ASSERT_TRUE(h.ok()) << ack.key;
          bool found = false;
          for (const auto& e : *h) found |= e.revision == ack.revision && e.value == ack.value;
          EXPECT_TRUE(found) << ack.key << "=" << ack.value << " at " << ack.revision;
        }
      }
    }
    std::string codes;
    for (const auto& [code, n] : failure_codes) codes += " " + code + "=" + std::to_string(n);
    std::printf("restart (%s): %zu acknowledged writes, %zu failed (%s ), stream at %llu\n",
                kill ? "SIGKILL" : "SIGTERM", acks, failures, codes.c_str(),
                static_cast<unsigned long long>(server.last_sequence));
  }

 private:
  NatsServer& server_;
  std::atomic<bool> stop_{false};
  std::atomic<int> phase_{kBefore};
};

TEST(replicated_fault, ServerStoppedUnderWriteLoadLosesAndDoublesNothing) {
  NatsServer server;
  ASSERT_TRUE(server.Start()) << server.error();
  RestartUnderLoad(server).Run(/*kill=*/false);
}

TEST(replicated_fault, ServerKilledUnderWriteLoadLosesAndDoublesNothing) {
  NatsServer server;
  ASSERT_TRUE(server.Start()) << server.error();
  RestartUnderLoad(server).Run(/*kill=*/true);
}

// ---------------------------------------------------------------------------
// Permissions.

// A server whose users are each denied one thing about bucket "secret".
class PermissionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string conf = conf_dir_.Sub("auth.conf");
    {
      std::ofstream out(conf);
      out << R"(authorization {
  users = [
    { user: admin, password: pw }
    # May not read the bucket's stream info (nor create it).
    { user: noinfo, password: pw, permissions: {
        publish: { deny: ["$JS.API.STREAM.INFO.KV_secret", "$JS.API.STREAM.CREATE.KV_secret"] } } }
    # May read the stream info but not create the stream.
    { user: nocreate, password: pw, permissions: {
        publish: { deny: ["$JS.API.STREAM.CREATE.KV_secret"] } } }
    # May not create consumers on the bucket's stream.
    { user: noconsumer, password: pw, permissions: {
        publish: { deny: ["$JS.API.CONSUMER.CREATE.KV_secret", "$JS.API.CONSUMER.CREATE.KV_secret.>"] } } }
    # May not subscribe to the bucket's subjects.
    { user: nosub, password: pw, permissions: { subscribe: { deny: ["$KV.secret.>"] } } }
    # May subscribe to request inboxes (_INBOX.<id>.<n>) only, not to the
    # inbox a push consumer delivers to (_INBOX.<id>).
    { user: noinbox, password: pw, permissions: { subscribe: { allow: ["_INBOX.*.*"] } } }
  ]
}
)";
    }
    server_.AddArgs({"-c", conf});
    ASSERT_TRUE(server_.Start()) << server_.error();
  }

  Result<std::unique_ptr<Engine>> Open(TempDir& dir, const std::string& user) {
    Options o;
    o.path = dir.path();
    o.nats.servers = {server_.url()};
    o.nats.user = user;
    o.nats.password = "pw";
    o.nats.write_timeout = 1s;
    return Engine::Open(o);
  }

  // Creates bucket `name` as the admin, with one key.
  void CreateAsAdmin(const std::string& name) {
    TempDir dir;
    auto e = Open(dir, "admin");
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    auto b = (*e)->OpenBucket(name);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    ASSERT_TRUE((*b)->Put("k", "v").ok());
  }

  // Opens bucket "secret" as `user`: PermissionDenied within the write
  // timeout and a margin. With `others_work`, bucket "open" still works for
  // the same user, so the denial is about "secret" only.
  void ExpectSecretDenied(const std::string& user, bool others_work = true) {
    TempDir dir;
    auto e = Open(dir, user);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    const auto start = std::chrono::steady_clock::now();
    auto secret = (*e)->OpenBucket("secret");
    const int64_t ms = MsSince(start);
    EXPECT_TRUE(secret.status().IsPermissionDenied()) << user << ": " << secret.status().ToString();
    EXPECT_NE(secret.status().message().find("secret"), std::string_view::npos)
        << secret.status().ToString();
    EXPECT_LT(ms, 3000) << user;
    if (!others_work) return;
    auto open = (*e)->OpenBucket("open");
    ASSERT_TRUE(open.ok()) << user << ": " << open.status().ToString();
    auto put = (*open)->Put("k", "v");
    EXPECT_TRUE(put.ok()) << put.status().ToString();
  }

  TempDir conf_dir_;
  NatsServer server_;
};
using replicated_auth = PermissionTest;

TEST_F(replicated_auth, DeniedStreamInfoIsPermissionDeniedAtOpenBucket) {
  CreateAsAdmin("secret");
  ExpectSecretDenied("noinfo");
}

TEST_F(replicated_auth, DeniedStreamCreateIsPermissionDeniedAtOpenBucket) {
  ExpectSecretDenied("nocreate");
  // Once the bucket exists, the same user binds to it and uses it.
  CreateAsAdmin("secret");
  TempDir dir;
  auto e = Open(dir, "nocreate");
  ASSERT_TRUE(e.ok());
  auto b = (*e)->OpenBucket("secret");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  Status synced = (*b)->Sync(5s);  // OpenBucket does not wait for the replica to fill
  ASSERT_TRUE(synced.ok()) << synced.ToString();
  auto got = (*b)->Get("k");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, "v");
}

TEST_F(replicated_auth, DeniedConsumerCreateIsPermissionDeniedAtOpenBucket) {
  CreateAsAdmin("secret");
  ExpectSecretDenied("noconsumer");
}

// A subscribe deny on $KV.secret.> does not reach JetStream: the consumer
// delivers to its own inbox, which the user may subscribe to, and the server
// does not filter those deliveries. So the replica is fed, as nats.c's own KV
// watchers would be: neither a refusal nor a starved replica.
TEST_F(replicated_auth, SubscribeDenyOnTheBucketsSubjectsStillFeedsTheReplica) {
  CreateAsAdmin("secret");
  TempDir dir;
  auto e = Open(dir, "nosub");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto b = (*e)->OpenBucket("secret");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  Status synced = (*b)->Sync(5s);
  ASSERT_TRUE(synced.ok()) << synced.ToString();
  EXPECT_EQ(*(*b)->Get("k"), "v");
  auto put = (*b)->Put("k", "w");
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  auto seen = (*b)->GetEntry("k");  // read-your-writes through the consumer
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->revision, *put);
  EXPECT_EQ(seen->value, "w");
}

TEST_F(replicated_auth, DeniedSubscribeToTheDeliverInboxIsPermissionDenied) {
  CreateAsAdmin("secret");
  ExpectSecretDenied("noinbox", /*others_work=*/false);
}

}  // namespace
}  // namespace revkv
