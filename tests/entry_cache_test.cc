// The cache of latest entries (Options::entry_cache_bytes): reads through it
// agree with the store after every kind of commit (writes, transactions,
// applied replica entries, a replica reset, expiry); readers racing writers
// never see an entry older than one a returned write made; its bound holds.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/entry_cache.h"
#include "engine/local_bucket.h"
#include "revkv/revkv.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

class EntryCacheTest : public ::testing::Test {
 protected:
  void Open(size_t cache_bytes, int history = 1) {
    Options o;
    o.path = dir_.path();
    o.entry_cache_bytes = cache_bytes;
    auto e = Engine::Open(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
    auto b = engine_->OpenBucket("c", {.history = history});
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    bucket_ = *b;
    local_ = std::dynamic_pointer_cast<engine::LocalBucket>(bucket_);
    ASSERT_NE(local_, nullptr);
    ASSERT_NE(local_->store().cache(), nullptr);
  }

  // GetEntry (through the cache) against a snapshot read (the store only).
  void ExpectCacheAgrees(const std::vector<std::string>& keys) {
    auto snap = bucket_->GetMany(keys);
    ASSERT_TRUE(snap.ok()) << snap.status().ToString();
    for (size_t i = 0; i < keys.size(); ++i) {
      const KeyRead& want = snap->keys[i];
      for (int pass = 0; pass < 2; ++pass) {  // a miss, then a hit
        auto got = bucket_->GetEntry(keys[i]);
        if (want.entry) {
          ASSERT_TRUE(got.ok()) << keys[i] << ": " << got.status().ToString();
          EXPECT_EQ(got->revision, want.entry->revision) << keys[i];
          EXPECT_EQ(got->value, want.entry->value) << keys[i];
          EXPECT_EQ(got->created_ns, want.entry->created_ns) << keys[i];
          EXPECT_EQ(got->ttl_ns, want.entry->ttl_ns) << keys[i];
          auto value = bucket_->Get(keys[i]);
          ASSERT_TRUE(value.ok());
          EXPECT_EQ(*value, want.entry->value);
        } else {
          EXPECT_TRUE(got.status().IsNotFound()) << keys[i] << ": " << got.status().ToString();
          EXPECT_EQ(got.status().revision(), want.revision) << keys[i];
          EXPECT_EQ(bucket_->Get(keys[i]).status().revision(), want.revision) << keys[i];
        }
      }
    }
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
  std::shared_ptr<Bucket> bucket_;
  std::shared_ptr<engine::LocalBucket> local_;
};

TEST_F(EntryCacheTest, ReadsAgreeWithTheStoreAfterEveryKindOfCommit) {
  Open(1 << 20, /*history=*/5);
  const std::vector<std::string> keys = {"a", "b", "c", "d", "e"};
  std::mt19937 rng(11);
  for (int step = 0; step < 400; ++step) {
    const std::string& key = keys[rng() % keys.size()];
    ExpectCacheAgrees(keys);  // fills the cache, so that each commit replaces a cached entry
    const uint64_t current = bucket_->GetEntry(key).ok() ? bucket_->GetEntry(key)->revision : 0;
    switch (rng() % 6) {
      case 0: ASSERT_TRUE(bucket_->Put(key, "p" + std::to_string(step)).ok()); break;
      case 1: (void)bucket_->Create(key, "c" + std::to_string(step)); break;
      case 2: (void)bucket_->Update(key, "u" + std::to_string(step), current); break;
      case 3: (void)bucket_->Delete(key); break;
      case 4: (void)bucket_->Purge(key); break;
      case 5: {
        Txn txn;
        txn.ops = {TxnOp::Put(key, "t" + std::to_string(step)),
                   TxnOp::Delete(key == "a" ? "b" : "a")};
        ASSERT_TRUE(bucket_->Commit(txn).ok());
        break;
      }
    }
  }
  ExpectCacheAgrees(keys);
  // A replica's commits: applied entries, then a reset.
  const uint64_t next = bucket_->LastRevision() + 1;
  ASSERT_TRUE(local_->ApplyCommitted({{"a", "applied", next, 1, Operation::kPut, 0},
                                      {"b", "", next + 2, 2, Operation::kPurge, 0}},
                                     next + 5)
                  .ok());
  ExpectCacheAgrees(keys);
  EXPECT_EQ(*bucket_->Get("a"), "applied");
  ASSERT_TRUE(local_->ResetReplica(42).ok());
  ExpectCacheAgrees(keys);
  EXPECT_TRUE(bucket_->Get("a").status().IsNotFound());
}

TEST_F(EntryCacheTest, AnExpiredEntryIsGoneFromTheCacheToo) {
  Open(1 << 20);
  ASSERT_TRUE(bucket_->Put("t", "short", {.ttl = 1s}).ok());
  ASSERT_EQ(*bucket_->Get("t"), "short");  // cached now
  std::this_thread::sleep_for(1200ms);
  EXPECT_TRUE(bucket_->Get("t").status().IsNotFound());
  // The reaper's tombstone (a Purge) reaches the cache as a commit.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (bucket_->LastRevision() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(bucket_->LastRevision(), 2u);
  EXPECT_EQ(bucket_->GetEntry("t").status().revision(), 2u);
  ExpectCacheAgrees({"t"});
}

// Writers rewrite keys in rotation while readers read them: a read never
// returns a value older than the last write that returned before it began,
// however reads that missed and filled the cache race the commits. The cache
// is small, so entries are evicted and refilled all along.
TEST_F(EntryCacheTest, ReadersNeverSeeOlderThanAReturnedWrite) {
  Open(16 << 10);
  constexpr int kKeys = 64;
  std::vector<std::atomic<uint64_t>> returned(kKeys);
  for (auto& r : returned) r = 0;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, stale{0};
  std::thread writer([&] {
    for (uint64_t n = 1; !stop; ++n) {
      const int k = static_cast<int>(n % kKeys);
      auto r = bucket_->Put("k." + std::to_string(k), std::to_string(n));
      ASSERT_TRUE(r.ok());
      returned[k] = n;
    }
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      while (!stop) {
        const int k = static_cast<int>(rng() % kKeys);
        const uint64_t floor = returned[k];
        auto v = bucket_->Get("k." + std::to_string(k));
        ++reads;
        if (floor == 0) continue;
        if (!v.ok() || std::stoull(*v) < floor) ++stale;
      }
    });
  }
  std::this_thread::sleep_for(1500ms);
  stop = true;
  writer.join();
  for (auto& r : readers) r.join();
  EXPECT_GT(reads.load(), 1000u);
  EXPECT_EQ(stale.load(), 0u);
  EXPECT_LE(local_->store().cache()->bytes(), local_->store().cache()->capacity());
}

// A replicated write waits until LastRevision() reaches its revision and
// then reads: once LastRevision() shows a commit, a read through the cache
// must show it too. One key, so its latest revision is the bucket's last.
TEST_F(EntryCacheTest, AReadAfterLastRevisionShowsThatCommit) {
  Open(16 << 10);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, stale{0}, worst{0};
  ASSERT_TRUE(bucket_->Put("k", "0").ok());
  std::thread writer([&] {
    for (uint64_t n = 1; !stop; ++n) ASSERT_TRUE(bucket_->Put("k", std::to_string(n)).ok());
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!stop) {
        const uint64_t last = bucket_->LastRevision();
        auto e = bucket_->GetEntry("k");
        ++reads;
        if (!e.ok() || e->revision < last) {
          ++stale;
          if (e.ok()) worst = last - e->revision;
        }
      }
    });
  }
  std::this_thread::sleep_for(1500ms);
  stop = true;
  writer.join();
  for (auto& r : readers) r.join();
  EXPECT_GT(reads.load(), 1000u);
  EXPECT_EQ(stale.load(), 0u) << "reads older than LastRevision(), e.g. by " << worst.load();
}

// The race the stamp closes, step by step: a read misses and reads the
// store, a commit then replaces the key, and the read's fill comes last. The
// fill must not put the older entry back.
TEST(EntryCache, AFillThatACommitOvertookIsDropped) {
  engine::EntryCache cache(1 << 20);
  const Entry old_entry{"k", "old", 1, 1, Operation::kPut, 0};
  const Entry new_entry{"k", "new", 2, 2, Operation::kPut, 0};
  const uint64_t stamp = cache.Stamp("k");  // the read misses
  cache.Commit(new_entry);                  // a commit lands
  cache.Fill(old_entry, stamp);             // the read's fill arrives late
  Entry got;
  ASSERT_TRUE(cache.Lookup("k", &got));
  EXPECT_EQ(got.value, "new");
  // Without a commit in between, a fill is kept; an invalidation drops it.
  cache.Fill(Entry{"j", "j1", 3, 3, Operation::kPut, 0}, cache.Stamp("j"));
  ASSERT_TRUE(cache.Lookup("j", &got));
  EXPECT_EQ(got.value, "j1");
  const uint64_t before = cache.Stamp("j");
  cache.Invalidate("j");
  EXPECT_FALSE(cache.Lookup("j", &got));
  cache.Fill(Entry{"j", "j1", 3, 3, Operation::kPut, 0}, before);
  EXPECT_FALSE(cache.Lookup("j", &got)) << "a fill stamped before the invalidation";
}

TEST_F(EntryCacheTest, TheBoundHolds) {
  Open(64 << 10);
  const std::string value(200, 'v');
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(bucket_->Put("k." + std::to_string(i), value).ok());
    ASSERT_TRUE(bucket_->Get("k." + std::to_string(i % 100)).ok());
  }
  engine::EntryCache* cache = local_->store().cache();
  EXPECT_GT(cache->bytes(), cache->capacity() / 2);
  EXPECT_LE(cache->bytes(), cache->capacity());
  // Evicted entries read from the store again.
  EXPECT_EQ(*bucket_->Get("k.0"), value);
}

}  // namespace
}  // namespace revkv
