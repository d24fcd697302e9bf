// Per-key TTL on local buckets (WriteOptions::ttl): reads after expiry,
// the Purge tombstone the engine writes at expiry (watchers and
// ChangesSince see it), Create over an expired key, the rules on which
// writes may carry a TTL, expiry across a reopen, and storage reclaimed by
// compaction.
//
// Suite names are lower-case so that `ctest -R ttl` selects them.

#include <gtest/gtest.h>

#include <rocksdb/db.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
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
using Clock = std::chrono::steady_clock;
using testing::TempDir;

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

class ttl_test : public ::testing::Test {
 protected:
  void SetUp() override { OpenEngine(); }

  void OpenEngine() {
    engine_.reset();
    auto engine = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
  }

  std::shared_ptr<Bucket> Open(const std::string& name, int history = 1) {
    auto b = engine_->OpenBucket(name, {.history = history});
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? *b : nullptr;
  }

  static WriteOptions Ttl(std::chrono::seconds ttl) {
    WriteOptions o;
    o.ttl = ttl;
    return o;
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(ttl_test, EntryIsReadableUntilItsTtlThenEveryReadSaysNotFound) {
  auto b = Open("t");
  ASSERT_TRUE(b);
  const auto written = Clock::now();
  auto rev = b->Put("k", "v", Ttl(1s));
  ASSERT_TRUE(rev.ok()) << rev.status().ToString();
  ASSERT_TRUE(b->Put("other", "stays").ok());
  auto entry = b->GetEntry("k");
  ASSERT_TRUE(entry.ok()) << entry.status().ToString();
  EXPECT_EQ(entry->ttl_ns, 1'000'000'000);
  ASSERT_LT(Clock::now() - written, 900ms) << "too slow to check before expiry";
  EXPECT_EQ(*b->Keys(), (std::vector<std::string>{"k", "other"}));

  std::this_thread::sleep_for(1s - (Clock::now() - written) + 50ms);
  auto got = b->Get("k");
  EXPECT_TRUE(got.status().IsNotFound()) << got.status().ToString();
  EXPECT_TRUE(b->GetEntry("k").status().IsNotFound());
  EXPECT_EQ(*b->Keys(), std::vector<std::string>{"other"});
  EXPECT_EQ(*b->Get("other"), "stays");
}

TEST_F(ttl_test, ExpiryWritesAPurgeTombstoneThatWatchersAndChangesSinceSee) {
  auto b = Open("t");
  ASSERT_TRUE(b);
  auto w = b->Watch(">", {.start = WatchStart::kUpdatesOnly});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  auto rev = b->Put("k", "v", Ttl(1s));
  ASSERT_TRUE(rev.ok());
  auto first = (*w)->Next(2s);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->revision, *rev);
  EXPECT_EQ(first->operation, Operation::kPut);

  auto tombstone = (*w)->Next(5s);
  ASSERT_TRUE(tombstone.ok()) << tombstone.status().ToString();
  EXPECT_EQ(tombstone->key, "k");
  EXPECT_EQ(tombstone->operation, Operation::kPurge);
  EXPECT_EQ(tombstone->revision, *rev + 1);
  EXPECT_EQ(b->LastRevision(), *rev + 1);
  auto changes = b->ChangesSince(0, 10);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 1u);  // the Put itself is gone with the purge
  EXPECT_EQ(changes->front().revision, *rev + 1);
  EXPECT_EQ(changes->front().operation, Operation::kPurge);
  // Now an ordinary tombstone: NotFound with its revision.
  EXPECT_EQ(b->Get("k").status().revision(), *rev + 1);
}

TEST_F(ttl_test, CreateOverAnExpiredKeySucceedsAndALiveOneIsExists) {
  auto b = Open("t", 3);
  ASSERT_TRUE(b);
  auto rev = b->Create("job", "a", Ttl(1s));
  ASSERT_TRUE(rev.ok()) << rev.status().ToString();
  auto again = b->Create("job", "b", Ttl(1s));
  EXPECT_TRUE(again.status().IsExists()) << again.status().ToString();
  std::this_thread::sleep_for(1100ms);
  auto after = b->Create("job", "c");
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(*b->Get("job"), "c");
  // Without a TTL it stays.
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(*b->Get("job"), "c");
}

TEST_F(ttl_test, UpdateOfAnExpiredKeyExpectingItsOldRevisionIsConflict) {
  auto b = Open("t");
  ASSERT_TRUE(b);
  auto rev = b->Put("k", "v", Ttl(1s));
  ASSERT_TRUE(rev.ok());
  std::this_thread::sleep_for(1100ms);
  auto upd = b->Update("k", "w", *rev);
  EXPECT_TRUE(upd.status().IsConflict()) << upd.status().ToString();
}

TEST_F(ttl_test, RewritingAKeyWithoutTtlCancelsTheExpiry) {
  auto b = Open("t");
  ASSERT_TRUE(b);
  ASSERT_TRUE(b->Put("k", "short", Ttl(1s)).ok());
  auto rev = b->Put("k", "long");
  ASSERT_TRUE(rev.ok());
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(*b->Get("k"), "long");
  EXPECT_EQ(b->LastRevision(), *rev) << "a tombstone was written for a rewritten key";
}

TEST_F(ttl_test, WritesThatCannotCarryATtlAreInvalidArgumentAndWriteNothing) {
  auto h1 = Open("h1");
  auto h5 = Open("h5", 5);
  ASSERT_TRUE(h1 && h5);
  auto expect_invalid = [](const Result<uint64_t>& r, const char* what) {
    EXPECT_TRUE(r.status().IsInvalidArgument()) << what << ": " << r.status().ToString();
  };
  expect_invalid(h5->Put("k", "v", Ttl(5s)), "Put, history 5");
  ASSERT_TRUE(h5->Put("k", "v").ok());
  expect_invalid(h5->Update("k", "v", 1, Ttl(5s)), "Update, history 5");
  expect_invalid(h1->Delete("k", std::nullopt, Ttl(5s)), "Delete");
  expect_invalid(h1->Put("k", "v", Ttl(-1s)), "negative TTL");
  expect_invalid(h1->Put("k", "v", Ttl(std::chrono::hours(24 * 365 * 101))), "101 years");
  EXPECT_EQ(h1->LastRevision(), 0u);
  EXPECT_EQ(h5->LastRevision(), 1u);
  // The ones that may.
  EXPECT_TRUE(h5->Create("new", "v", Ttl(5s)).ok());
  EXPECT_TRUE(h5->Purge("k", std::nullopt, Ttl(5s)).ok());
  EXPECT_TRUE(h1->Put("k", "v", Ttl(5s)).ok());
  EXPECT_TRUE(h1->Update("k", "w", 1, Ttl(5s)).ok());
}

TEST_F(ttl_test, PurgeWithATtlRemovesItsOwnTombstoneAndLeavesNothing) {
  auto b = Open("t", 3);
  ASSERT_TRUE(b);
  ASSERT_TRUE(b->Put("k", "1").ok());
  ASSERT_TRUE(b->Put("k", "2").ok());
  auto purged = b->Purge("k", std::nullopt, Ttl(1s));
  ASSERT_TRUE(purged.ok());
  auto history = b->History("k");
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(history->size(), 1u);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto changes = b->ChangesSince(0, 10);
        return changes.ok() && changes->empty();
      },
      5s))
      << "the expired purge tombstone is still in the revision log";
  EXPECT_TRUE(b->History("k").status().IsNotFound());
  auto got = b->Get("k");
  EXPECT_TRUE(got.status().IsNotFound());
  EXPECT_EQ(got.status().revision(), 0u) << "no entry at all, not a tombstone";
  EXPECT_EQ(b->LastRevision(), *purged) << "removing it takes no revision";
  EXPECT_TRUE(b->Create("k", "again").ok());
}

TEST_F(ttl_test, EntriesExpireAcrossAReopenAndTheTombstoneIsWrittenAfterIt) {
  {
    auto b = Open("t");
    ASSERT_TRUE(b);
    ASSERT_TRUE(b->Put("gone", "v", Ttl(1s)).ok());     // expires while closed
    ASSERT_TRUE(b->Put("later", "v", Ttl(3s)).ok());    // expires after the reopen
    ASSERT_TRUE(b->Put("kept", "v").ok());
  }
  engine_.reset();
  std::this_thread::sleep_for(1200ms);
  OpenEngine();
  auto b = Open("t");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->Get("gone").status().IsNotFound());
  EXPECT_EQ(*b->Get("later"), "v");
  ASSERT_TRUE(WaitFor([&] { return b->LastRevision() == 5u; }, 5s))
      << "last revision " << b->LastRevision() << "; both expiries need a tombstone";
  EXPECT_EQ(b->Get("gone").status().revision(), 4u);
  EXPECT_EQ(b->Get("later").status().revision(), 5u);
  EXPECT_EQ(*b->Get("kept"), "v");
}

// The store's table files, concatenated (the write-ahead log is recycled on
// its own schedule).
std::string StoreBytes(const std::string& dir) {
  std::string all;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (!f.is_regular_file() || f.path().extension() != ".sst") continue;
    std::ifstream in(f.path(), std::ios::binary);
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return all;
}

TEST_F(ttl_test, CompactionReclaimsTheBytesOfExpiredValues) {
  auto b = Open("t");
  ASSERT_TRUE(b);
  // Random bytes: compression in the table files cannot hide them.
  std::string secret = "expiring-secret-";
  std::mt19937 rng(7);
  for (int i = 0; i < 4096; ++i) secret.push_back(static_cast<char>('a' + rng() % 26));
  auto rev = b->Put("k", secret, Ttl(1s));
  ASSERT_TRUE(rev.ok());
  auto* local = dynamic_cast<engine::LocalBucket*>(b.get());
  ASSERT_NE(local, nullptr);
  rocksdb::DB* db = local->db();
  ASSERT_TRUE(db->Flush(rocksdb::FlushOptions(), local->TEST_family()).ok());
  ASSERT_NE(StoreBytes(dir_.path()).find(secret), std::string::npos)
      << "the value should be on disk before it expires";
  ASSERT_TRUE(WaitFor([&] { return b->LastRevision() == *rev + 1; }, 5s));
  for (auto* cf : {local->TEST_family(), local->TEST_log_family()}) {
    ASSERT_TRUE(db->Flush(rocksdb::FlushOptions(), cf).ok());
    ASSERT_TRUE(db->CompactRange(rocksdb::CompactRangeOptions(), cf, nullptr, nullptr).ok());
  }
  ASSERT_TRUE(db->Flush(rocksdb::FlushOptions(), db->DefaultColumnFamily()).ok());
  EXPECT_EQ(StoreBytes(dir_.path()).find(secret), std::string::npos)
      << "the expired value is still in the store's files";
}

}  // namespace
}  // namespace revkv
