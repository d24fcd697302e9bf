// Transactions on replicated buckets (nats-server 2.12+): one atomic batch
// per transaction. Every operation kind and compare, seen by nats.c as
// ordinary KV entries; a stale transaction writes nothing and names the key
// that moved; compares on unwritten keys ride on operations without a
// condition of their own, and more of them than carriers is refused; a
// replica never shows part of a transaction; fenced transactions; the
// batch limit; the refusal on an older server; and a bucket another client
// created without atomic batches, turned on by allow_atomic_batches.

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "replication/replicated_bucket.h"
#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::NatsServer;
using testing::TempDir;

bool ServerHasAtomicBatch() { return NatsServer::VersionAtLeast(2, 12); }

class replicated_txn : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start()) << server_.error(); }

  // Two engines with their own replicas of bucket "bank".
  void OpenTwo(std::unique_ptr<Engine>* a, std::unique_ptr<Engine>* b,
               std::shared_ptr<Bucket>* ja, std::shared_ptr<Bucket>* jb) {
    *a = OpenEngine(dir_a_);
    *b = OpenEngine(dir_b_);
    ASSERT_TRUE(*a && *b);
    auto opened_a = (*a)->OpenBucket("bank");
    auto opened_b = (*b)->OpenBucket("bank");
    ASSERT_TRUE(opened_a.ok() && opened_b.ok());
    *ja = *opened_a;
    *jb = *opened_b;
  }

  std::unique_ptr<Engine> OpenEngine(const TempDir& dir) {
    Options o;
    o.path = dir.path();
    o.nats.servers = {server_.url()};
    o.locks_bucket = "bank";
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // The value nats.c reads for `key` of bucket "bank", or "<absent>".
  std::string NatsGet(const std::string& key) {
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    kvStore* kv = nullptr;
    std::string out = "<error>";
    if (testing::ConnectClient(server_.url(), &nc, &js) == NATS_OK &&
        js_KeyValue(&kv, js, "bank") == NATS_OK) {
      kvEntry* e = nullptr;
      natsStatus s = kvStore_Get(&e, kv, key.c_str());
      if (s == NATS_OK) {
        out.assign(static_cast<const char*>(kvEntry_Value(e)),
                   static_cast<size_t>(kvEntry_ValueLen(e)));
      } else if (s == NATS_NOT_FOUND) {
        out = "<absent>";
      }
      kvEntry_Destroy(e);
    }
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return out;
  }

  // A JetStream API request from a plain nats.c client; the reply's JSON.
  nlohmann::json ApiRequest(const std::string& subject, const std::string& body) {
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    nlohmann::json out;
    if (testing::ConnectClient(server_.url(), &nc, &js) == NATS_OK) {
      natsMsg* reply = nullptr;
      if (natsConnection_Request(&reply, nc, subject.c_str(), body.data(),
                                 static_cast<int>(body.size()), 5000) == NATS_OK) {
        out = nlohmann::json::parse(std::string(natsMsg_GetData(reply),
                                                static_cast<size_t>(natsMsg_GetDataLength(reply))),
                                    nullptr, false);
      }
      natsMsg_Destroy(reply);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return out;
  }

  // A KV bucket as another client makes it: the standard layout with
  // per-message TTL and limit markers, a description and metadata, but
  // without allow_atomic.
  void CreateForeignBucket(const std::string& bucket) {
    const nlohmann::json config = {
        {"name", "KV_" + bucket},
        {"subjects", nlohmann::json::array({"$KV." + bucket + ".>"})},
        {"retention", "limits"},
        {"max_msgs_per_subject", 5},
        {"max_age", 3600000000000},
        {"max_msg_size", 4096},
        {"discard", "new"},
        {"storage", "file"},
        {"num_replicas", 1},
        {"deny_delete", true},
        {"allow_rollup_hdrs", true},
        {"allow_direct", true},
        {"allow_msg_ttl", true},
        {"subject_delete_marker_ttl", 2000000000},
        {"description", "made by another client"},
        {"metadata", {{"team", "billing"}}},
    };
    const nlohmann::json created =
        ApiRequest("$JS.API.STREAM.CREATE.KV_" + bucket, config.dump());
    ASSERT_FALSE(created.is_discarded());
    ASSERT_FALSE(created.contains("error")) << created.dump();
    ASSERT_FALSE(created["config"].value("allow_atomic", false)) << created.dump();
  }

  // The stream's config without what the server derives itself (its
  // _nats.* metadata, which follows the features in use).
  nlohmann::json StreamConfig(const std::string& bucket) {
    nlohmann::json info = ApiRequest("$JS.API.STREAM.INFO.KV_" + bucket, "");
    if (info.is_discarded() || !info.contains("config")) return nullptr;
    nlohmann::json config = info["config"];
    if (config.contains("metadata")) {
      nlohmann::json& metadata = config["metadata"];
      for (auto it = metadata.begin(); it != metadata.end();) {
        it = it.key().starts_with("_nats.") ? metadata.erase(it) : std::next(it);
      }
    }
    config["created"] = info.value("created", "");
    return config;
  }

  NatsServer server_;
  TempDir dir_a_, dir_b_;
};

TEST_F(replicated_txn, EveryKindCommitsAsOneBatchThatOtherClientsRead) {
  if (!ServerHasAtomicBatch()) GTEST_FAIL() << "runs on 2.12+ only (see CMakeLists.txt)";
  TempDir da;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  auto bank = a->OpenBucket("bank", {.history = 3});
  ASSERT_TRUE(bank.ok()) << bank.status().ToString();
  const uint64_t ra = *(*bank)->Put("a", "1");
  const uint64_t rb = *(*bank)->Put("b", "1");
  ASSERT_TRUE((*bank)->Put("c", "1").ok());
  ASSERT_TRUE((*bank)->Put("d", "1").ok());
  ASSERT_TRUE((*bank)->Delete("gone").ok());
  ASSERT_TRUE((*bank)->Delete("deleted").ok());
  ASSERT_TRUE((*bank)->Put("watched", "w").ok());
  const uint64_t before = (*bank)->LastRevision();
  Txn txn;
  txn.compares = {TxnCompare::RevisionIs("a", ra), TxnCompare::Absent("deleted"),
                  TxnCompare::Present("watched")};
  txn.ops = {TxnOp::Update("b", "2", rb), TxnOp::Create("gone", "back"), TxnOp::Put("p", "v"),
             TxnOp::Delete("c"), TxnOp::Purge("d")};
  auto done = (*bank)->Commit(txn);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  ASSERT_EQ(done->revisions.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(done->revisions[i], before + 1 + i);
  EXPECT_EQ((*bank)->LastRevision(), done->revision);  // read-your-writes
  EXPECT_EQ(*(*bank)->Get("b"), "2");
  EXPECT_EQ(*(*bank)->Get("gone"), "back");
  EXPECT_TRUE((*bank)->Get("c").status().IsNotFound());
  // Other clients see ordinary KV entries.
  EXPECT_EQ(NatsGet("b"), "2");
  EXPECT_EQ(NatsGet("gone"), "back");
  EXPECT_EQ(NatsGet("p"), "v");
  EXPECT_EQ(NatsGet("c"), "<absent>");
  EXPECT_EQ(NatsGet("d"), "<absent>");
  EXPECT_EQ(NatsGet("a"), "1");
  // A second replica applied the same.
  TempDir db;
  auto b = OpenEngine(db);
  ASSERT_TRUE(b);
  auto other = b->OpenBucket("bank");
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Sync(5s).ok());
  EXPECT_EQ((*other)->GetEntry("p")->revision, before + 3);
}

TEST_F(replicated_txn, StaleTransactionWritesNothingAndNamesTheKeyThatMoved) {
  if (!ServerHasAtomicBatch()) GTEST_FAIL() << "runs on 2.12+ only (see CMakeLists.txt)";
  std::unique_ptr<Engine> a, b;
  std::shared_ptr<Bucket> ja, jb;
  ASSERT_NO_FATAL_FAILURE(OpenTwo(&a, &b, &ja, &jb));
  const uint64_t rx = *ja->Put("x", "1");
  const uint64_t ry = *ja->Put("y", "1");
  const uint64_t rz = *ja->Put("z", "1");
  ASSERT_TRUE(jb->Sync(5s).ok());
  const uint64_t moved = *jb->Update("y", "b", ry);  // A's replica may not know yet
  ASSERT_TRUE(jb->Sync(5s).ok());
  const uint64_t last = jb->LastRevision();
  auto stale = ja->Commit({{TxnCompare::RevisionIs("z", rz)},
                              {TxnOp::Update("x", "a", rx), TxnOp::Update("y", "a", ry),
                               TxnOp::Put("w", "a")}});
  ASSERT_TRUE(stale.status().IsConflict()) << stale.status().ToString();
  EXPECT_NE(stale.status().ToString().find("'y'"), std::string::npos) << stale.status().ToString();
  ASSERT_TRUE(stale.status().revision_known());
  EXPECT_EQ(stale.status().revision(), moved);
  // A compare that moved is named too.
  auto stale_compare = ja->Commit({{TxnCompare::RevisionIs("y", ry)}, {TxnOp::Put("w", "a")}});
  ASSERT_TRUE(stale_compare.status().IsConflict()) << stale_compare.status().ToString();
  EXPECT_NE(stale_compare.status().ToString().find("'y'"), std::string::npos);
  auto exists = ja->Commit({{}, {TxnOp::Create("x", "again"), TxnOp::Put("w", "a")}});
  EXPECT_TRUE(exists.status().IsExists()) << exists.status().ToString();
  for (auto* bucket : {&ja, &jb}) {
    ASSERT_TRUE((*bucket)->Sync(5s).ok());
    EXPECT_EQ((*bucket)->LastRevision(), last) << "a refused transaction was stored";
    EXPECT_EQ(*(*bucket)->Get("x"), "1");
    EXPECT_TRUE((*bucket)->Get("w").status().IsNotFound());
  }
}

TEST_F(replicated_txn, CompareOnAnUnwrittenKeyNeedsAnOperationToCarryIt) {
  if (!ServerHasAtomicBatch()) GTEST_FAIL() << "runs on 2.12+ only (see CMakeLists.txt)";
  TempDir da;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  auto bank = a->OpenBucket("bank");
  ASSERT_TRUE(bank.ok());
  const uint64_t r1 = *(*bank)->Put("c1", "1");
  const uint64_t r2 = *(*bank)->Put("c2", "1");
  const uint64_t rx = *(*bank)->Put("x", "1");
  const uint64_t last = (*bank)->LastRevision();
  // Two compares, one carrier (the Update checks its own key).
  auto refused = (*bank)->Commit({{TxnCompare::RevisionIs("c1", r1), TxnCompare::RevisionIs("c2", r2)},
                                  {TxnOp::Update("x", "2", rx), TxnOp::Put("p", "1")}});
  EXPECT_TRUE(refused.status().IsInvalidArgument()) << refused.status().ToString();
  EXPECT_EQ((*bank)->LastRevision(), last);
  // Two carriers: accepted, and the compares are checked by the server.
  auto ok = (*bank)->Commit({{TxnCompare::RevisionIs("c1", r1), TxnCompare::RevisionIs("c2", r2)},
                             {TxnOp::Put("p", "1"), TxnOp::Delete("q")}});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  auto wrong = (*bank)->Commit({{TxnCompare::RevisionIs("c2", r2 + 1000)}, {TxnOp::Put("p", "2")}});
  ASSERT_TRUE(wrong.status().IsConflict()) << wrong.status().ToString();
  EXPECT_NE(wrong.status().ToString().find("'c2'"), std::string::npos) << wrong.status().ToString();
  EXPECT_EQ(*(*bank)->Get("p"), "1");
}

// Engine A moves amounts between four accounts with transactions; engine
// B's replica is scanned over and over, each scan one consistent view of
// it. The total never changes in any scan: the apply loop never applies
// part of a batch.
TEST_F(replicated_txn, ReplicaNeverShowsPartOfATransaction) {
  if (!ServerHasAtomicBatch()) GTEST_FAIL() << "runs on 2.12+ only (see CMakeLists.txt)";
  std::unique_ptr<Engine> a, b;
  std::shared_ptr<Bucket> ja, jb;
  ASSERT_NO_FATAL_FAILURE(OpenTwo(&a, &b, &ja, &jb));
  constexpr int kAccounts = 4, kStart = 100;
  for (int i = 0; i < kAccounts; ++i) {
    ASSERT_TRUE(ja->Put("acct." + std::to_string(i), std::to_string(kStart)).ok());
  }
  ASSERT_TRUE(jb->Sync(5s).ok());
  auto* replicated = dynamic_cast<replication::ReplicatedBucket*>(jb.get());
  ASSERT_NE(replicated, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> scans{0}, bad{0}, transfers{0};
  std::thread reader([&] {
    while (!stop) {
      auto all = replicated->replica()->Entries("acct.>");
      if (!all.ok() || all->entries.size() != kAccounts) continue;
      int total = 0;
      for (const Entry& e : all->entries) total += std::stoi(e.value);
      ++scans;
      if (total != kAccounts * kStart) ++bad;
    }
  });
  std::mt19937 rng(7);
  const auto end = std::chrono::steady_clock::now() + 2s;
  while (std::chrono::steady_clock::now() < end) {
    const int from = static_cast<int>(rng() % kAccounts);
    const int to = (from + 1) % kAccounts;
    const std::string kf = "acct." + std::to_string(from), kt = "acct." + std::to_string(to);
    auto ef = ja->GetEntry(kf);
    auto et = ja->GetEntry(kt);
    ASSERT_TRUE(ef.ok() && et.ok());
    auto r = ja->Commit(
        {{}, {TxnOp::Update(kf, std::to_string(std::stoi(ef->value) - 1), ef->revision),
              TxnOp::Update(kt, std::to_string(std::stoi(et->value) + 1), et->revision)}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ++transfers;
  }
  ASSERT_TRUE(jb->Sync(5s).ok());
  stop = true;
  reader.join();
  EXPECT_GT(transfers.load(), 20);
  EXPECT_GT(scans.load(), 100);
  EXPECT_EQ(bad.load(), 0) << "of " << scans.load() << " scans";
}

TEST_F(replicated_txn, FencedTransactionAndTheBatchLimit) {
  if (!ServerHasAtomicBatch()) GTEST_FAIL() << "runs on 2.12+ only (see CMakeLists.txt)";
  TempDir da, db;
  auto a = OpenEngine(da);
  auto b = OpenEngine(db);
  ASSERT_TRUE(a && b);
  auto bank = a->OpenBucket("bank");
  ASSERT_TRUE(bank.ok());
  auto held = a->Acquire("lock.T", 1s, 5s, {.auto_renew = false});
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  const WriteOptions fenced{.fence = (*held)->fence()};
  auto ok = (*bank)->Commit({{}, {TxnOp::Put("a", "1"), TxnOp::Create("b", "1")}}, fenced);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_TRUE((*held)->Renew().ok());  // the batch rewrote the record; the lock holds
  Txn full;
  for (size_t i = 0; i < kMaxTxnOps; ++i) full.ops.push_back(TxnOp::Put("k." + std::to_string(i), "v"));
  auto too_big = (*bank)->Commit(full, fenced);
  EXPECT_TRUE(too_big.status().IsInvalidArgument()) << too_big.status().ToString();
  auto taken = b->Acquire("lock.T", 10s, 10s);
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  ASSERT_TRUE((*bank)->Sync(5s).ok());
  const uint64_t last = (*bank)->LastRevision();  // the takeover included
  auto stale = (*bank)->Commit({{}, {TxnOp::Put("a", "stale"), TxnOp::Put("c", "stale")}}, fenced);
  EXPECT_TRUE(stale.status().IsLockLost()) << stale.status().ToString();
  ASSERT_TRUE((*bank)->Sync(5s).ok());
  EXPECT_EQ(*(*bank)->Get("a"), "1");
  EXPECT_EQ((*bank)->LastRevision(), last) << "a refused transaction was stored";
  EXPECT_TRUE((*bank)->Get("c").status().IsNotFound());
  // The server's limit of 1,000 messages, unfenced.
  auto whole = (*bank)->Commit(full);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(whole->revisions.size(), kMaxTxnOps);
  EXPECT_EQ(NatsGet("k.999"), "v");
}

// Two engines, each with two threads, move amounts between three accounts
// with UpdateManyWithRetry: the conflicts between engines are retried, no
// transfer is lost, and the total holds.
TEST_F(replicated_txn, UpdateManyWithRetryAcrossEnginesConservesTheTotal) {
  if (!ServerHasAtomicBatch()) GTEST_FAIL() << "runs on 2.12+ only (see CMakeLists.txt)";
  std::unique_ptr<Engine> a, b;
  std::shared_ptr<Bucket> ja, jb;
  ASSERT_NO_FATAL_FAILURE(OpenTwo(&a, &b, &ja, &jb));
  const std::vector<std::string> accounts = {"acct.0", "acct.1", "acct.2"};
  for (const auto& k : accounts) ASSERT_TRUE(ja->Put(k, "100").ok());
  ASSERT_TRUE(jb->Sync(5s).ok());
  std::atomic<int> done{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto& bucket = t % 2 == 0 ? ja : jb;
      for (int i = 0; i < 40; ++i) {
        const size_t from = static_cast<size_t>((t + i) % 3), to = (from + 1) % 3;
        auto r = bucket->UpdateManyWithRetry(
            {accounts[from], accounts[to]},
            [](const std::vector<std::optional<std::string>>& v)
                -> std::optional<std::vector<KeyChange>> {
              return std::vector<KeyChange>{KeyChange::Put(std::to_string(std::stoi(*v[0]) - 1)),
                                            KeyChange::Put(std::to_string(std::stoi(*v[1]) + 1))};
            },
            {.max_attempts = 1000, .deadline = 20s});
        if (r.ok() && r->written) {
          ++done;
        } else {
          ++failed;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(done.load(), 160);
  ASSERT_TRUE(ja->Sync(5s).ok());
  auto all = ja->Entries("acct.>");
  ASSERT_TRUE(all.ok());
  int total = 0;
  for (const Entry& e : all->entries) total += std::stoi(e.value);
  EXPECT_EQ(total, 300);
}

TEST_F(replicated_txn, OlderServerRefusesNamingTheVersion) {
  TempDir da;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  auto bank = a->OpenBucket("bank");
  ASSERT_TRUE(bank.ok());
  auto r = (*bank)->Commit({{}, {TxnOp::Put("a", "1"), TxnOp::Put("b", "1")}});
  if (ServerHasAtomicBatch()) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    return;
  }
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  EXPECT_NE(r.status().ToString().find("2.12.0"), std::string::npos) << r.status().ToString();
  EXPECT_TRUE((*bank)->Get("a").status().IsNotFound());
}

// A bucket another client created lacks allow_atomic: transactions on it
// are refused, naming the option, until it is opened with
// allow_atomic_batches, which turns it on with a stream update that keeps
// every other setting. A bucket this engine already has open takes it too.
TEST_F(replicated_txn, AllowAtomicBatchesTurnsItOnInAForeignBucketKeepingItsSettings) {
  if (!ServerHasAtomicBatch()) GTEST_FAIL() << "runs on 2.12+ only (see CMakeLists.txt)";
  ASSERT_NO_FATAL_FAILURE(CreateForeignBucket("bank"));
  ASSERT_NO_FATAL_FAILURE(CreateForeignBucket("ledger"));
  const nlohmann::json before = StreamConfig("bank");
  ASSERT_FALSE(before.is_null());

  TempDir da, db;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  auto plain = a->OpenBucket("bank");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  const Txn txn{{}, {TxnOp::Put("a", "1"), TxnOp::Put("b", "1")}};
  auto refused = (*plain)->Commit(txn);
  ASSERT_TRUE(refused.status().IsInvalidArgument()) << refused.status().ToString();
  EXPECT_NE(refused.status().ToString().find("BucketOptions::allow_atomic_batches"),
            std::string::npos)
      << refused.status().ToString();
  EXPECT_TRUE((*plain)->Get("a").status().IsNotFound());

  // Another engine opens it with the option: the stream gets allow_atomic,
  // and keeps everything else.
  auto b = OpenEngine(db);
  ASSERT_TRUE(b);
  auto enabled = b->OpenBucket("bank", {.allow_atomic_batches = true});
  ASSERT_TRUE(enabled.ok()) << enabled.status().ToString();
  auto done = (*enabled)->Commit(txn);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(*(*enabled)->Get("b"), "1");
  nlohmann::json after = StreamConfig("bank");
  ASSERT_FALSE(after.is_null());
  EXPECT_TRUE(after.value("allow_atomic", false)) << after.dump();
  after.erase("allow_atomic");
  EXPECT_EQ(after, before) << "before: " << before.dump() << "\nafter: " << after.dump();
  EXPECT_EQ(after.value("max_msgs_per_subject", 0), 5);
  EXPECT_EQ(after.value("max_age", int64_t{0}), 3600000000000);
  EXPECT_EQ(after.value("max_msg_size", 0), 4096);
  EXPECT_TRUE(after.value("allow_msg_ttl", false));
  EXPECT_EQ(after.value("subject_delete_marker_ttl", int64_t{0}), 2000000000);
  EXPECT_TRUE(after.value("deny_delete", false));
  EXPECT_TRUE(after.value("allow_direct", false));
  EXPECT_EQ(after.value("description", ""), "made by another client");
  EXPECT_EQ(after["metadata"].value("team", ""), "billing");

  // The first engine's transactions now commit too, and its replica sees
  // the other's.
  auto also = (*plain)->Commit({{}, {TxnOp::Put("c", "1"), TxnOp::Put("d", "1")}});
  ASSERT_TRUE(also.ok()) << also.status().ToString();
  ASSERT_TRUE((*plain)->Sync(5s).ok());
  EXPECT_EQ(*(*plain)->Get("a"), "1");
  // Opening it with the option again changes nothing.
  {
    TempDir dc;
    auto c = OpenEngine(dc);
    ASSERT_TRUE(c);
    auto again = c->OpenBucket("bank", {.allow_atomic_batches = true});
    ASSERT_TRUE(again.ok()) << again.status().ToString();
  }

  // A bucket the engine has open already: reopening it with the option turns
  // it on.
  auto ledger = a->OpenBucket("ledger");
  ASSERT_TRUE(ledger.ok());
  ASSERT_TRUE((*ledger)->Commit(txn).status().IsInvalidArgument());
  auto reopened = a->OpenBucket("ledger", {.allow_atomic_batches = true});
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  auto committed = (*reopened)->Commit(txn);
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_TRUE(StreamConfig("ledger").value("allow_atomic", false));
}

// On a server without atomic batches the option is refused, naming the
// version; on 2.12+ it is accepted for a bucket revkv creates (which has
// them already).
TEST_F(replicated_txn, AllowAtomicBatchesOnAnOlderServerNamesTheVersion) {
  TempDir da;
  auto a = OpenEngine(da);
  ASSERT_TRUE(a);
  auto bank = a->OpenBucket("bank", {.allow_atomic_batches = true});
  if (ServerHasAtomicBatch()) {
    ASSERT_TRUE(bank.ok()) << bank.status().ToString();
    EXPECT_TRUE(StreamConfig("bank").value("allow_atomic", false));
    return;
  }
  ASSERT_TRUE(bank.status().IsInvalidArgument()) << bank.status().ToString();
  EXPECT_NE(bank.status().ToString().find("2.12.0"), std::string::npos)
      << bank.status().ToString();
  EXPECT_NE(bank.status().ToString().find("allow_atomic_batches"), std::string::npos)
      << bank.status().ToString();
  // Nothing was created.
  EXPECT_TRUE(ApiRequest("$JS.API.STREAM.INFO.KV_bank", "").contains("error"));
}

}  // namespace
}  // namespace revkv
