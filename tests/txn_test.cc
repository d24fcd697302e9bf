// Transactions on local buckets (Bucket::Commit, revkv/txn.h): every
// operation kind in one commit with consecutive revisions; a failed compare
// or an operation's own failed condition writes nothing and names the key;
// the rules on what a transaction may hold; readers and watchers never see
// part of one (a bank of accounts whose total never changes); fenced and
// TTL'd transactions; and revisions that survive a reopen.
//
// Suite names are lower-case so that `ctest -R txn` selects them.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/local_bucket.h"
#include "revkv/revkv.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

class txn_test : public ::testing::Test {
 protected:
  void SetUp() override { OpenEngine(); }

  void OpenEngine() {
    bucket_.reset();
    engine_.reset();
    auto engine = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    auto b = engine_->OpenBucket(name_, {.history = history_});
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    bucket_ = *b;
  }

  uint64_t Rev(const std::string& key) {
    auto e = bucket_->GetEntry(key);
    return e.ok() ? e->revision : e.status().revision();
  }

  TempDir dir_;
  std::string name_ = "bank";
  int history_ = 3;
  std::unique_ptr<Engine> engine_;
  std::shared_ptr<Bucket> bucket_;
};

TEST_F(txn_test, EveryOperationKindCommitsTogetherWithConsecutiveRevisions) {
  const uint64_t a = *bucket_->Put("a", "1");
  const uint64_t b = *bucket_->Put("b", "1");
  const uint64_t c = *bucket_->Put("c", "1");
  ASSERT_TRUE(bucket_->Put("d", "0").ok());
  ASSERT_TRUE(bucket_->Put("d", "1").ok());  // two revisions, for the purge
  ASSERT_TRUE(bucket_->Put("unrelated", "x").ok());
  Txn txn;
  txn.compares = {TxnCompare::RevisionIs("a", a), TxnCompare::Absent("never"),
                  TxnCompare::Present("unrelated")};
  txn.ops = {TxnOp::Update("b", "2", b), TxnOp::Create("new", "n"), TxnOp::Put("p", "v"),
             TxnOp::Delete("c", c), TxnOp::Purge("d")};
  const uint64_t before = bucket_->LastRevision();
  auto done = bucket_->Commit(txn);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  ASSERT_EQ(done->revisions.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(done->revisions[i], before + 1 + i);
  EXPECT_EQ(done->revision, before + 5);
  EXPECT_EQ(bucket_->LastRevision(), before + 5);
  EXPECT_EQ(*bucket_->Get("b"), "2");
  EXPECT_EQ(*bucket_->Get("new"), "n");
  EXPECT_EQ(*bucket_->Get("p"), "v");
  EXPECT_TRUE(bucket_->Get("c").status().IsNotFound());
  EXPECT_EQ(bucket_->Get("c").status().revision(), before + 4);
  EXPECT_TRUE(bucket_->Get("d").status().IsNotFound());
  EXPECT_EQ(bucket_->History("d")->size(), 1u);  // the purge dropped the older revision
  EXPECT_EQ(*bucket_->Get("a"), "1");           // compared, not written
  auto changes = bucket_->ChangesSince(before, 100);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 5u);
  EXPECT_EQ((*changes)[0].key, "b");
  EXPECT_EQ((*changes)[3].operation, Operation::kDelete);
  EXPECT_EQ((*changes)[4].operation, Operation::kPurge);
}

// Each way a transaction can fail its checks: nothing is written, and the
// status names the key and its current revision.
TEST_F(txn_test, FailedCheckWritesNothingAndNamesTheKey) {
  const uint64_t a = *bucket_->Put("a", "1");
  const uint64_t b = *bucket_->Put("b", "1");
  ASSERT_TRUE(bucket_->Delete("gone").ok());
  const uint64_t gone = Rev("gone");
  struct Case {
    const char* what;
    Txn txn;
    Code code;
    std::string key;
    uint64_t current;
  };
  std::vector<Case> cases = {
      {"compare revision", {{TxnCompare::RevisionIs("a", a - 1)}, {TxnOp::Put("x", "v")}},
       Code::kConflict, "'a'", a},
      {"compare absent", {{TxnCompare::Absent("a")}, {TxnOp::Put("x", "v")}}, Code::kConflict,
       "'a'", a},
      {"compare present on a tombstone",
       {{TxnCompare::Present("gone")}, {TxnOp::Put("x", "v")}}, Code::kConflict, "'gone'", gone},
      {"compare present on nothing", {{TxnCompare::Present("nothing")}, {TxnOp::Put("x", "v")}},
       Code::kConflict, "'nothing'", 0},
      {"update", {{}, {TxnOp::Put("x", "v"), TxnOp::Update("b", "2", b + 100)}},
       Code::kConflict, "'b'", b},
      {"create", {{}, {TxnOp::Put("x", "v"), TxnOp::Create("a", "2")}}, Code::kExists, "'a'",
       a},
      {"delete", {{}, {TxnOp::Put("x", "v"), TxnOp::Delete("b", a)}}, Code::kConflict, "'b'",
       b},
      {"purge", {{}, {TxnOp::Purge("b", 0)}}, Code::kConflict, "'b'", b},
  };
  const uint64_t last = bucket_->LastRevision();
  for (const Case& c : cases) {
    auto r = bucket_->Commit(c.txn);
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.status().code(), c.code) << c.what << ": " << r.status().ToString();
    EXPECT_NE(r.status().ToString().find(c.key), std::string::npos)
        << c.what << ": " << r.status().ToString();
    EXPECT_EQ(r.status().revision(), c.current) << c.what;
    EXPECT_EQ(bucket_->LastRevision(), last) << c.what;
    EXPECT_TRUE(bucket_->Get("x").status().IsNotFound()) << c.what;
  }
  // Create over a tombstone and a compare of absent on one both pass.
  Txn ok{{TxnCompare::Absent("gone"), TxnCompare::RevisionIs("nothing", 0)},
         {TxnOp::Create("x", "v"), TxnOp::Update("b", "2", b)}};
  auto r = bucket_->Commit(ok);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

TEST_F(txn_test, WhatATransactionMayHoldIsCheckedFirst) {
  ASSERT_TRUE(bucket_->Put("a", "1").ok());
  const uint64_t last = bucket_->LastRevision();
  Txn too_many;
  for (size_t i = 0; i <= kMaxTxnOps; ++i) too_many.ops.push_back(TxnOp::Put("k" + std::to_string(i), "v"));
  Txn at_limit = too_many;
  at_limit.ops.pop_back();
  TxnOp update_without_revision = TxnOp::Update("a", "2", 1);
  update_without_revision.expected_revision.reset();
  const std::vector<std::pair<const char*, Txn>> refused = {
      {"no operation", {{TxnCompare::Present("a")}, {}}},
      {"a key twice", {{}, {TxnOp::Put("k", "1"), TxnOp::Delete("k")}}},
      {"a compared key written", {{TxnCompare::Present("a")}, {TxnOp::Put("a", "2")}}},
      {"a key compared twice", {{TxnCompare::Present("a"), TxnCompare::Absent("a")},
                                {TxnOp::Put("k", "1")}}},
      {"over the limit", too_many},
      {"a bad key", {{}, {TxnOp::Put("k", "1"), TxnOp::Put("bad key", "1")}}},
      {"an update without its revision", {{}, {update_without_revision}}},
      {"a value over the bucket's limit",
       {{}, {TxnOp::Put("big", std::string(bucket_->max_value_size() + 1, 'x'))}}},
  };
  for (const auto& [what, txn] : refused) {
    auto r = bucket_->Commit(txn);
    EXPECT_TRUE(r.status().IsInvalidArgument()) << what << ": " << r.status().ToString();
    EXPECT_EQ(bucket_->LastRevision(), last) << what;
  }
  auto full = bucket_->Commit(at_limit);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_EQ(full->revisions.size(), kMaxTxnOps);
  EXPECT_EQ(bucket_->LastRevision(), last + kMaxTxnOps);
}

// Four threads move amounts between five accounts with transactions that
// compare nothing but the revisions they read; a fifth reads all accounts
// in one scan over and over. The total never changes in any scan, and no
// acknowledged transfer is lost. A watcher sees every transaction whole.
TEST_F(txn_test, ReadersAndWatchersNeverSeePartOfATransaction) {
  name_ = "bank1";
  history_ = 1;
  OpenEngine();
  constexpr int kAccounts = 5, kStart = 1000;
  for (int i = 0; i < kAccounts; ++i) {
    ASSERT_TRUE(bucket_->Put("acct." + std::to_string(i), std::to_string(kStart)).ok());
  }
  auto watch =
      bucket_->Watch("acct.>", {.start = WatchStart::kUpdatesOnly, .max_pending = 1 << 22});
  ASSERT_TRUE(watch.ok());
  // The first Next() puts the watch on the live feed, which keeps every
  // revision (a catch-up from a history-1 bucket's log would see only each
  // key's latest).
  ASSERT_TRUE((*watch)->Next(0ms).status().IsTimeout());
  auto* local = dynamic_cast<engine::LocalBucket*>(bucket_.get());
  ASSERT_NE(local, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> transfers{0}, bad_scans{0}, scans{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      while (!stop) {
        const int from = static_cast<int>(rng() % kAccounts);
        const int to = (from + 1 + static_cast<int>(rng() % (kAccounts - 1))) % kAccounts;
        const std::string kf = "acct." + std::to_string(from), kt = "acct." + std::to_string(to);
        auto ef = bucket_->GetEntry(kf);
        auto et = bucket_->GetEntry(kt);
        if (!ef.ok() || !et.ok()) continue;
        const int amount = static_cast<int>(rng() % 10);
        auto r = bucket_->Commit(
            {{}, {TxnOp::Update(kf, std::to_string(std::stoi(ef->value) - amount), ef->revision),
                  TxnOp::Update(kt, std::to_string(std::stoi(et->value) + amount), et->revision)}});
        if (r.ok()) ++transfers;
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop) {
      auto all = local->LatestEntries("acct.>", nullptr);
      if (!all.ok()) continue;
      int total = 0;
      for (const Entry& e : *all) total += std::stoi(e.value);
      ++scans;
      if (total != kAccounts * kStart) ++bad_scans;
    }
  });
  std::this_thread::sleep_for(1500ms);
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_GT(transfers.load(), 100);
  EXPECT_GT(scans.load(), 100);
  EXPECT_EQ(bad_scans.load(), 0) << "of " << scans.load() << " scans";
  int total = 0;
  for (int i = 0; i < kAccounts; ++i) total += std::stoi(*bucket_->Get("acct." + std::to_string(i)));
  EXPECT_EQ(total, kAccounts * kStart);
  // Every transaction reached the watcher as two consecutive revisions.
  int seen = 0;
  while (true) {
    auto first = (*watch)->Next(0ms);
    if (!first.ok()) break;
    auto second = (*watch)->Next(1s);
    ASSERT_TRUE(second.ok());
    EXPECT_EQ(second->revision, first->revision + 1);
    ++seen;
  }
  EXPECT_EQ(seen, transfers.load());
}

TEST_F(txn_test, FencedTransactionCommitsOnlyWhileTheLockHolds) {
  auto held = engine_->Acquire("lock.T", 200ms, 1s, {.auto_renew = false, .locks_bucket = "bank"});
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  const WriteOptions fenced{.fence = (*held)->fence()};
  auto ok = bucket_->Commit({{}, {TxnOp::Put("a", "1"), TxnOp::Put("b", "1")}}, fenced);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  auto own = bucket_->Commit({{}, {TxnOp::Put("a", "2"), TxnOp::Put("lock.T", "x")}}, fenced);
  EXPECT_TRUE(own.status().IsInvalidArgument()) << own.status().ToString();
  auto taken = engine_->Acquire("lock.T", 10s, 5s, {.locks_bucket = "bank"});
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  const uint64_t last = bucket_->LastRevision();
  auto stale = bucket_->Commit({{}, {TxnOp::Put("a", "stale"), TxnOp::Put("b", "stale")}}, fenced);
  EXPECT_TRUE(stale.status().IsLockLost()) << stale.status().ToString();
  EXPECT_EQ(bucket_->LastRevision(), last);
  EXPECT_EQ(*bucket_->Get("a"), "1");
}

TEST_F(txn_test, TtlAppliesToEveryValueWrittenAndRevisionsSurviveAReopen) {
  name_ = "ttl1";
  history_ = 1;
  OpenEngine();
  WriteOptions ttl;
  ttl.ttl = 1s;
  auto r = bucket_->Commit({{}, {TxnOp::Put("t1", "v"), TxnOp::Create("t2", "v")}}, ttl);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(bucket_->GetEntry("t1")->ttl_ns, 1'000'000'000);
  EXPECT_EQ(bucket_->GetEntry("t2")->ttl_ns, 1'000'000'000);
  std::this_thread::sleep_for(1100ms);
  EXPECT_TRUE(bucket_->Get("t1").status().IsNotFound());
  EXPECT_TRUE(bucket_->Get("t2").status().IsNotFound());
  // With more history, a Put may not take a TTL, in a transaction as alone.
  {
    auto h3 = engine_->OpenBucket("h3", {.history = 3});
    ASSERT_TRUE(h3.ok());
    auto refused = (*h3)->Commit({{}, {TxnOp::Create("c", "v"), TxnOp::Put("t1", "v")}}, ttl);
    EXPECT_TRUE(refused.status().IsInvalidArgument()) << refused.status().ToString();
    EXPECT_EQ((*h3)->LastRevision(), 0u);
  }

  auto committed = bucket_->Commit({{}, {TxnOp::Put("x", "1"), TxnOp::Put("y", "1")}});
  ASSERT_TRUE(committed.ok());
  OpenEngine();
  EXPECT_EQ(bucket_->LastRevision(), committed->revision);
  EXPECT_EQ(bucket_->GetEntry("y")->revision, committed->revision);
  auto next = bucket_->Put("z", "1");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, committed->revision + 1);
}

TEST_F(txn_test, SnapshotReadsGiveOneRevisionOfSeveralKeys) {
  const uint64_t a = *bucket_->Put("s.a", "1");
  ASSERT_TRUE(bucket_->Put("s.b", "2").ok());
  ASSERT_TRUE(bucket_->Delete("s.b").ok());
  const uint64_t gone = Rev("s.b");
  WriteOptions ttl;
  ttl.ttl = 1s;
  ASSERT_TRUE(bucket_->Create("s.t", "t", ttl).ok());
  const uint64_t c = *bucket_->Put("s.c", "3");
  ASSERT_TRUE(bucket_->Put("other", "x").ok());
  auto entries = bucket_->Entries("s.>");
  ASSERT_TRUE(entries.ok()) << entries.status().ToString();
  EXPECT_EQ(entries->revision, bucket_->LastRevision());
  ASSERT_EQ(entries->entries.size(), 3u);  // key order, live only
  EXPECT_EQ(entries->entries[0].key, "s.a");
  EXPECT_EQ(entries->entries[1].key, "s.c");
  EXPECT_EQ(entries->entries[2].key, "s.t");
  auto many = bucket_->GetMany({"s.c", "s.b", "never", "s.a"});
  ASSERT_TRUE(many.ok()) << many.status().ToString();
  EXPECT_EQ(many->revision, bucket_->LastRevision());
  ASSERT_EQ(many->keys.size(), 4u);
  EXPECT_EQ(many->keys[0].entry->value, "3");
  EXPECT_EQ(many->keys[0].revision, c);
  EXPECT_FALSE(many->keys[1].entry.has_value());
  EXPECT_EQ(many->keys[1].revision, gone);
  EXPECT_FALSE(many->keys[2].entry.has_value());
  EXPECT_EQ(many->keys[2].revision, 0u);
  EXPECT_EQ(many->keys[3].revision, a);
  std::this_thread::sleep_for(1100ms);  // s.t expires: out of both reads
  EXPECT_EQ(bucket_->Entries("s.>")->entries.size(), 2u);
  auto expired = bucket_->GetMany({"s.t"});
  ASSERT_TRUE(expired.ok());
  EXPECT_FALSE(expired->keys[0].entry.has_value());
  EXPECT_TRUE(bucket_->GetMany({"bad key"}).status().IsInvalidArgument());
  EXPECT_TRUE(bucket_->Entries("a..b").status().IsInvalidArgument());
}

// UpdateManyWithRetry: a transfer that conserves the total, a kept key
// whose value moved under the read (the commit conflicts on it and the
// update runs again), a decline, and what it refuses.
TEST_F(txn_test, UpdateManyWithRetryCommitsWhatMutateComputedFromOneSnapshot) {
  ASSERT_TRUE(bucket_->Put("m.a", "100").ok());
  ASSERT_TRUE(bucket_->Put("rate", "2").ok());
  int calls = 0;
  auto moved = bucket_->UpdateManyWithRetry(
      {"m.a", "m.b", "rate"},
      [&](const std::vector<std::optional<std::string>>& v)
          -> std::optional<std::vector<KeyChange>> {
        ++calls;
        if (calls == 1) {
          EXPECT_TRUE(bucket_->Put("rate", "3").ok());  // moves under the read
        }
        const int rate = std::stoi(*v[2]);
        const int a = std::stoi(*v[0]);
        const int b = v[1] ? std::stoi(*v[1]) : 0;
        return std::vector<KeyChange>{KeyChange::Put(std::to_string(a - rate)),
                                      KeyChange::Put(std::to_string(b + rate)),
                                      KeyChange::Keep()};
      });
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_TRUE(moved->written);
  EXPECT_EQ(moved->attempts, 2);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(*bucket_->Get("m.a"), "97");  // with the rate it read the second time
  EXPECT_EQ(*bucket_->Get("m.b"), "3");
  ASSERT_EQ(moved->revisions.size(), 3u);
  EXPECT_EQ(moved->revisions[0], Rev("m.a"));
  EXPECT_EQ(moved->revisions[1], moved->revision);
  EXPECT_EQ(moved->revisions[2], Rev("rate"));

  auto declined = bucket_->UpdateManyWithRetry(
      {"m.a"}, [](const std::vector<std::optional<std::string>>&)
                   -> std::optional<std::vector<KeyChange>> { return std::nullopt; });
  ASSERT_TRUE(declined.ok());
  EXPECT_FALSE(declined->written);
  auto deleted = bucket_->UpdateManyWithRetry(
      {"m.a", "m.b"}, [](const std::vector<std::optional<std::string>>&)
                          -> std::optional<std::vector<KeyChange>> {
        return std::vector<KeyChange>{KeyChange::Delete(), KeyChange::Keep()};
      });
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(bucket_->Get("m.a").status().IsNotFound());
  auto wrong_size = bucket_->UpdateManyWithRetry(
      {"m.a", "m.b"}, [](const std::vector<std::optional<std::string>>&)
                          -> std::optional<std::vector<KeyChange>> {
        return std::vector<KeyChange>{KeyChange::Keep()};
      });
  EXPECT_TRUE(wrong_size.status().IsInvalidArgument()) << wrong_size.status().ToString();
  auto twice = bucket_->UpdateManyWithRetry(
      {"m.a", "m.a"}, [](const std::vector<std::optional<std::string>>&)
                          -> std::optional<std::vector<KeyChange>> { return std::nullopt; });
  EXPECT_TRUE(twice.status().IsInvalidArgument()) << twice.status().ToString();
}

}  // namespace
}  // namespace revkv
