// Transactions on replicated buckets (nats-server 2.12+): one atomic batch
// per transaction. Every operation kind and compare, seen by nats.c as
// ordinary KV entries; a stale transaction writes nothing and names the key
// that moved; compares on unwritten keys ride on operations without a
// condition of their own, and more of them than carriers is refused; a
// replica never shows part of a transaction; fenced transactions; the
// batch limit; and the refusal on an older server.

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
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

  NatsServer server_;
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
  TempDir da, db;
  auto a = OpenEngine(da);
  auto b = OpenEngine(db);
  ASSERT_TRUE(a && b);
  auto ja = a->OpenBucket("bank");
  auto jb = b->OpenBucket("bank");
  ASSERT_TRUE(ja.ok() && jb.ok());
  const uint64_t rx = *(*ja)->Put("x", "1");
  const uint64_t ry = *(*ja)->Put("y", "1");
  const uint64_t rz = *(*ja)->Put("z", "1");
  ASSERT_TRUE((*jb)->Sync(5s).ok());
  const uint64_t moved = *(*jb)->Update("y", "b", ry);  // A's replica may not know yet
  ASSERT_TRUE((*jb)->Sync(5s).ok());
  const uint64_t last = (*jb)->LastRevision();
  auto stale = (*ja)->Commit({{TxnCompare::RevisionIs("z", rz)},
                              {TxnOp::Update("x", "a", rx), TxnOp::Update("y", "a", ry),
                               TxnOp::Put("w", "a")}});
  ASSERT_TRUE(stale.status().IsConflict()) << stale.status().ToString();
  EXPECT_NE(stale.status().ToString().find("'y'"), std::string::npos) << stale.status().ToString();
  ASSERT_TRUE(stale.status().revision_known());
  EXPECT_EQ(stale.status().revision(), moved);
  // A compare that moved is named too.
  auto stale_compare = (*ja)->Commit({{TxnCompare::RevisionIs("y", ry)}, {TxnOp::Put("w", "a")}});
  ASSERT_TRUE(stale_compare.status().IsConflict()) << stale_compare.status().ToString();
  EXPECT_NE(stale_compare.status().ToString().find("'y'"), std::string::npos);
  auto exists = (*ja)->Commit({{}, {TxnOp::Create("x", "again"), TxnOp::Put("w", "a")}});
  EXPECT_TRUE(exists.status().IsExists()) << exists.status().ToString();
  for (auto* bucket : {&*ja, &*jb}) {
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
  TempDir da, db;
  auto a = OpenEngine(da);
  auto b = OpenEngine(db);
  ASSERT_TRUE(a && b);
  auto ja = a->OpenBucket("bank");
  auto jb = b->OpenBucket("bank");
  ASSERT_TRUE(ja.ok() && jb.ok());
  constexpr int kAccounts = 4, kStart = 100;
  for (int i = 0; i < kAccounts; ++i) {
    ASSERT_TRUE((*ja)->Put("acct." + std::to_string(i), std::to_string(kStart)).ok());
  }
  ASSERT_TRUE((*jb)->Sync(5s).ok());
  auto* replicated = dynamic_cast<replication::ReplicatedBucket*>(jb->get());
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
    auto ef = (*ja)->GetEntry(kf);
    auto et = (*ja)->GetEntry(kt);
    ASSERT_TRUE(ef.ok() && et.ok());
    auto r = (*ja)->Commit(
        {{}, {TxnOp::Update(kf, std::to_string(std::stoi(ef->value) - 1), ef->revision),
              TxnOp::Update(kt, std::to_string(std::stoi(et->value) + 1), et->revision)}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ++transfers;
  }
  ASSERT_TRUE((*jb)->Sync(5s).ok());
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
  TempDir da, db;
  auto a = OpenEngine(da);
  auto b = OpenEngine(db);
  ASSERT_TRUE(a && b);
  auto ja = a->OpenBucket("bank");
  auto jb = b->OpenBucket("bank");
  ASSERT_TRUE(ja.ok() && jb.ok());
  const std::vector<std::string> accounts = {"acct.0", "acct.1", "acct.2"};
  for (const auto& k : accounts) ASSERT_TRUE((*ja)->Put(k, "100").ok());
  ASSERT_TRUE((*jb)->Sync(5s).ok());
  std::atomic<int> done{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto& bucket = t % 2 == 0 ? *ja : *jb;
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
  ASSERT_TRUE((*ja)->Sync(5s).ok());
  auto all = (*ja)->Entries("acct.>");
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

}  // namespace
}  // namespace revkv
