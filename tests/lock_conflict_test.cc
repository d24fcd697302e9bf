// The lock protocol's answer to a Conflict that names no revision (a
// clustered nats-server's 10164), over a real local bucket whose writes a
// decorator can refuse that way. The real-server tests
// (replicated_lock_test, replicated_cluster_test) cover the same path
// against clustered streams, where the race that causes 10164 cannot be
// steered.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "engine/local_bucket.h"
#include "engine/lock_manager.h"
#include "engine/record_codec.h"
#include "revkv/revkv.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

// Forwards to a real bucket; CAS writes (Update, and Delete with an expected
// revision) to the lock's key fail with ConflictRevisionUnknown while
// `refuse` is above 0, without writing, as a server does while another write
// to the key is in flight.
class RacingStore final : public Bucket {
 public:
  explicit RacingStore(std::shared_ptr<Bucket> inner) : inner_(std::move(inner)) {}
  std::atomic<int> refuse{0};
  std::atomic<int> refused{0};
  std::atomic<int> slow_create_ms{0};
  // Runs after a Create that stored, before it returns: key, revision.
  std::function<void(const std::string&, uint64_t)> after_create;

  const std::string& name() const override { return inner_->name(); }
  int history() const override { return inner_->history(); }
  uint32_t max_value_size() const override { return inner_->max_value_size(); }
  Result<std::string> Get(std::string_view key) override { return inner_->Get(key); }
  Result<Entry> GetEntry(std::string_view key) override { return inner_->GetEntry(key); }
  Result<uint64_t> Put(std::string_view key, std::string_view value,
                       const WriteOptions& options) override {
    return inner_->Put(key, value, options);
  }
  Result<uint64_t> Create(std::string_view key, std::string_view value,
                          const WriteOptions& options) override {
    auto r = inner_->Create(key, value, options);
    // A server that stores the write but confirms it late.
    std::this_thread::sleep_for(std::chrono::milliseconds(slow_create_ms.load()));
    if (r.ok() && after_create) after_create(std::string(key), *r);
    return r;
  }
  Result<uint64_t> Update(std::string_view key, std::string_view value, uint64_t expected,
                          const WriteOptions& options) override {
    if (Refuse()) return InFlight(key);
    return inner_->Update(key, value, expected, options);
  }
  Result<uint64_t> Delete(std::string_view key, std::optional<uint64_t> expected,
                          const WriteOptions& options) override {
    if (expected && Refuse()) return InFlight(key);
    return inner_->Delete(key, expected, options);
  }
  Result<uint64_t> Purge(std::string_view key, std::optional<uint64_t> expected,
                         const WriteOptions& options) override {
    return inner_->Purge(key, expected, options);
  }
  Result<EntriesSnapshot> Entries(std::string_view filter) override {
    return inner_->Entries(filter);
  }
  Result<KeysSnapshot> GetMany(const std::vector<std::string>& keys) override {
    return inner_->GetMany(keys);
  }
  Result<ManyUpdateOutcome> UpdateManyWithRetry(const std::vector<std::string>& keys,
                                                const ManyMutator& mutate,
                                                const RetryPolicy& policy,
                                                const WriteOptions& options) override {
    return inner_->UpdateManyWithRetry(keys, mutate, policy, options);
  }
  Result<TxnResult> Commit(const Txn& txn, const WriteOptions& options) override {
    return inner_->Commit(txn, options);
  }
  Result<std::vector<std::string>> KeysAfter(std::string_view filter, std::string_view after,
                                             size_t limit) override {
    return inner_->KeysAfter(filter, after, limit);
  }
  Result<std::vector<std::string>> Keys(std::string_view filter) override {
    return inner_->Keys(filter);
  }
  Result<std::vector<Entry>> History(std::string_view key) override { return inner_->History(key); }
  Result<std::vector<Entry>> ChangesSince(uint64_t after, size_t limit) override {
    return inner_->ChangesSince(after, limit);
  }
  uint64_t LastRevision() override { return inner_->LastRevision(); }
  Status Sync(std::chrono::milliseconds timeout) override {
    ++syncs;
    return inner_->Sync(timeout);
  }
  Result<UpdateOutcome> UpdateWithRetry(std::string_view key, const Mutator& mutate,
                                        const RetryPolicy& policy,
                                        const WriteOptions& options) override {
    return inner_->UpdateWithRetry(key, mutate, policy, options);
  }
  Result<std::unique_ptr<Watcher>> Watch(std::string_view filter,
                                         const WatchOptions& options) override {
    return inner_->Watch(filter, options);
  }
  Result<std::unique_ptr<Watcher>> Watch(std::string_view filter, const WatchOptions& options,
                                         WatchCallback callback) override {
    return inner_->Watch(filter, options, std::move(callback));
  }
  BucketStatus GetStatus() override { return inner_->GetStatus(); }

  std::atomic<int> syncs{0};

 private:
  bool Refuse() {
    if (refuse.load() <= 0) return false;
    --refuse;
    ++refused;
    return true;
  }
  static Status InFlight(std::string_view key) {
    return Status::ConflictRevisionUnknown("another write to '" + std::string(key) +
                                           "' was in flight (10164)");
  }
  std::shared_ptr<Bucket> inner_;
};

class lock_conflict : public ::testing::Test {
 protected:
  void SetUp() override {
    Options o;
    o.path = dir_.path();
    auto e = Engine::Open(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
    auto b = engine_->OpenBucket("locks");
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    bucket_ = *b;
    store_ = std::make_shared<RacingStore>(bucket_);
    auto local = std::dynamic_pointer_cast<engine::LocalBucket>(bucket_);
    manager_ = engine::LockManager::Create(store_, local, local);
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
  std::shared_ptr<Bucket> bucket_;
  std::shared_ptr<RacingStore> store_;
  std::shared_ptr<engine::LockManager> manager_;
};

TEST_F(lock_conflict, RenewalRefusedWithoutARevisionCatchesUpAndKeepsTheLock) {
  auto held = manager_->Acquire("L", 300ms, 1s, {});
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  // The next renewals are refused as if another write were in flight; the
  // record still holds our token, so each is retried after a catch-up.
  store_->refuse = 3;
  std::this_thread::sleep_for(700ms);  // several renewals (every 100 ms)
  EXPECT_EQ(store_->refused.load(), 3);
  EXPECT_GE(store_->syncs.load(), 3);
  EXPECT_FALSE((*held)->lost());
  EXPECT_TRUE((*held)->Release().ok());
  auto free_again = manager_->Acquire("L", 300ms, std::nullopt, {});
  EXPECT_TRUE(free_again.ok()) << free_again.status().ToString();
}

TEST_F(lock_conflict, ReleaseRefusedWithoutARevisionCatchesUpAndReleases) {
  LockOptions manual;
  manual.auto_renew = false;
  auto held = manager_->Acquire("L", 10s, 1s, manual);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  store_->refuse = 2;
  EXPECT_TRUE((*held)->Release().ok());
  EXPECT_EQ(store_->refused.load(), 2);
  // Released for real: the record is a tombstone and the lock is free.
  EXPECT_TRUE(bucket_->Get("L").status().IsNotFound());
  auto next = manager_->Acquire("L", 10s, std::nullopt, {});
  EXPECT_TRUE(next.ok()) << next.status().ToString();
}

TEST_F(lock_conflict, RefusedRenewalAfterATakeoverIsLost) {
  LockOptions manual;
  manual.auto_renew = false;
  auto held = manager_->Acquire("L", 10s, 1s, manual);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  // Someone else's write landed on the record (a takeover): the refusal
  // that names no revision must not be taken for "still ours".
  auto entry = bucket_->GetEntry("L");
  ASSERT_TRUE(entry.ok());
  const std::string theirs = engine::EncodeLockRecord({"someone else", 10'000'000'000, 0, 0});
  ASSERT_TRUE(bucket_->Update("L", theirs, entry->revision).ok());
  store_->refuse = 1;
  Status renewed = (*held)->Renew();
  EXPECT_TRUE(renewed.IsLockLost()) << renewed.ToString();
  EXPECT_TRUE((*held)->lost());
}


// The opening comment's decorator also answers a Create late, as a server
// does across a leader election: the grant arrives after lease - margin has
// passed since it was sent. Acquire must never hand out a lock that is
// already lost by its own clock.
TEST_F(lock_conflict, GrantConfirmedAfterItsLeaseRanOutIsRenewedBeforeItIsHandedOut) {
  store_->slow_create_ms = 300;  // lease 200 ms, margin 40 ms
  auto held = manager_->Acquire("L", 200ms, 2s, {});
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_FALSE((*held)->lost());
  // Renewed once with a CAS on the granted revision before it was returned.
  auto record = bucket_->GetEntry("L");
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(record->revision, (*held)->fencing_token() + 1);
  store_->slow_create_ms = 0;
  std::this_thread::sleep_for(400ms);  // two leases of automatic renewals
  EXPECT_FALSE((*held)->lost());
  EXPECT_TRUE((*held)->Release().ok());
}

TEST_F(lock_conflict, GrantTakenOverBeforeItWasConfirmedIsTimeoutNeverALostHandle) {
  store_->slow_create_ms = 300;
  // While the grant's answer is on its way, a waiter elsewhere takes the
  // record over.
  store_->after_create = [this](const std::string& key, uint64_t granted) {
    ASSERT_TRUE(bucket_->Update(key, "another holder's record", granted).ok());
  };
  auto held = manager_->Acquire("L", 200ms, 2s, {});
  ASSERT_FALSE(held.ok()) << "a lock lost before it was handed out";
  EXPECT_TRUE(held.status().IsTimeout()) << held.status().ToString();
  EXPECT_NE(held.status().message().find("granted"), std::string_view::npos)
      << held.status().ToString();
  auto tried = manager_->Acquire("L2", 200ms, std::nullopt, {});
  ASSERT_FALSE(tried.ok());
  EXPECT_TRUE(tried.status().IsBusy()) << tried.status().ToString();
  // The other holder's records are untouched.
  EXPECT_EQ(*bucket_->Get("L"), "another holder's record");
  EXPECT_EQ(*bucket_->Get("L2"), "another holder's record");
}

}  // namespace
}  // namespace revkv
