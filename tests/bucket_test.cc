// Bucket semantics of the local engine: every operation's success and error
// paths, revisions, history, filters, persistence and concurrency.

#include <gtest/gtest.h>

#include <cstdio>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/layout.h"
#include "engine/local_bucket.h"
#include "engine/local_engine.h"
#include "revkv/revkv.h"
#include "revkv/validation.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using testing::TempDir;

class BucketTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(BucketOptions bucket_options = {}) {
    bucket_.reset();
    engine_.reset();
    auto engine = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    auto bucket = engine_->OpenBucket("default", bucket_options);
    ASSERT_TRUE(bucket.ok()) << bucket.status().ToString();
    bucket_ = *bucket;
  }

  std::shared_ptr<Bucket> OpenBucket(const std::string& name, BucketOptions options = {}) {
    auto b = engine_->OpenBucket(name, options);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? *b : nullptr;
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
  std::shared_ptr<Bucket> bucket_;
};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST_F(BucketTest, PutThenGetReturnsValueBytesExactly) {
  const std::string value("a\0b\xff", 4);
  auto rev = bucket_->Put("job.1", value);
  ASSERT_TRUE(rev.ok()) << rev.status().ToString();
  EXPECT_EQ(*rev, 1u);
  auto got = bucket_->Get("job.1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, value);
  ASSERT_TRUE(bucket_->Put("empty", "").ok());
  auto empty = bucket_->Get("empty");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
}

TEST_F(BucketTest, GetOfMissingKeyIsNotFoundWithRevisionZero) {
  auto got = bucket_->Get("nope");
  EXPECT_TRUE(got.status().IsNotFound()) << got.status().ToString();
  EXPECT_EQ(got.status().revision(), 0u);
  EXPECT_TRUE(bucket_->GetEntry("nope").status().IsNotFound());
}

TEST_F(BucketTest, LastWriteWins) {
  ASSERT_TRUE(bucket_->Put("k", "one").ok());
  ASSERT_TRUE(bucket_->Put("k", "two").ok());
  EXPECT_EQ(*bucket_->Get("k"), "two");
}

TEST_F(BucketTest, RevisionsStrictlyIncreaseAcrossAllWriteKinds) {
  std::vector<uint64_t> revs;
  auto push = [&](Result<uint64_t> r) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    revs.push_back(*r);
  };
  push(bucket_->Put("a", "1"));
  push(bucket_->Create("b", "1"));
  push(bucket_->Update("a", "2", revs[0]));
  push(bucket_->Delete("b"));
  push(bucket_->Create("b", "again"));
  push(bucket_->Purge("a"));
  push(bucket_->Put("c", "x"));
  for (size_t i = 1; i < revs.size(); ++i) EXPECT_EQ(revs[i], revs[i - 1] + 1);
  EXPECT_EQ(bucket_->LastRevision(), revs.back());
}

TEST_F(BucketTest, GetEntryReportsRevisionOperationAndCreatedTime) {
  int64_t before = NowNs();
  auto rev = bucket_->Put("k", "v");
  int64_t after = NowNs();
  ASSERT_TRUE(rev.ok());
  auto e = bucket_->GetEntry("k");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->key, "k");
  EXPECT_EQ(e->value, "v");
  EXPECT_EQ(e->revision, *rev);
  EXPECT_EQ(e->operation, Operation::kPut);
  EXPECT_GE(e->created_ns, before);
  EXPECT_LE(e->created_ns, after);
}

TEST_F(BucketTest, CreateOnLiveKeyReturnsExistsWithItsRevision) {
  auto rev = bucket_->Create("k", "v1");
  ASSERT_TRUE(rev.ok());
  auto again = bucket_->Create("k", "v2");
  EXPECT_TRUE(again.status().IsExists()) << again.status().ToString();
  EXPECT_EQ(again.status().revision(), *rev);
  EXPECT_EQ(*bucket_->Get("k"), "v1");
  EXPECT_EQ(bucket_->LastRevision(), *rev);
}

TEST_F(BucketTest, CreateAfterDeleteIsCasOnTombstone) {
  ASSERT_TRUE(bucket_->Put("k", "v1").ok());
  auto del = bucket_->Delete("k");
  ASSERT_TRUE(del.ok());
  auto created = bucket_->Create("k", "v2");
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(*created, *del + 1);
  EXPECT_EQ(*bucket_->Get("k"), "v2");
  EXPECT_TRUE(bucket_->Create("k", "v3").status().IsExists());
}

TEST_F(BucketTest, CreateAfterPurgeSucceeds) {
  ASSERT_TRUE(bucket_->Put("k", "v1").ok());
  ASSERT_TRUE(bucket_->Purge("k").ok());
  EXPECT_TRUE(bucket_->Create("k", "v2").ok());
  EXPECT_EQ(*bucket_->Get("k"), "v2");
}

TEST_F(BucketTest, ConcurrentCreateAfterTombstoneHasExactlyOneWinner) {
  ASSERT_TRUE(bucket_->Put("k", "v").ok());
  ASSERT_TRUE(bucket_->Delete("k").ok());
  std::atomic<int> wins{0}, exists{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto r = bucket_->Create("k", "winner-" + std::to_string(t));
      if (r.ok()) {
        ++wins;
      } else if (r.status().IsExists()) {
        ++exists;
      } else {
        ++other;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(exists.load(), 7);
  EXPECT_EQ(other.load(), 0);
}

TEST_F(BucketTest, UpdateWithStaleRevisionConflictsAndNamesCurrent) {
  auto r1 = bucket_->Put("k", "v1");
  auto r2 = bucket_->Put("k", "v2");
  ASSERT_TRUE(r1.ok() && r2.ok());
  auto stale = bucket_->Update("k", "v3", *r1);
  ASSERT_TRUE(stale.status().IsConflict()) << stale.status().ToString();
  EXPECT_EQ(stale.status().revision(), *r2);
  EXPECT_NE(stale.status().message().find(std::to_string(*r2)), std::string_view::npos);
  EXPECT_EQ(*bucket_->Get("k"), "v2");
  EXPECT_EQ(bucket_->LastRevision(), *r2);

  auto fresh = bucket_->Update("k", "v3", *r2);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_EQ(*bucket_->Get("k"), "v3");
}

TEST_F(BucketTest, UpdateWithZeroExpectsNoEntryAtAll) {
  EXPECT_TRUE(bucket_->Update("k", "v", 0).ok());
  auto again = bucket_->Update("k", "v", 0);
  EXPECT_TRUE(again.status().IsConflict());
  EXPECT_EQ(again.status().revision(), 1u);
  EXPECT_TRUE(bucket_->Update("absent", "v", 5).status().IsConflict());
}

TEST_F(BucketTest, UpdateOnTombstoneRevisionSucceeds) {
  ASSERT_TRUE(bucket_->Put("k", "v1").ok());
  auto del = bucket_->Delete("k");
  ASSERT_TRUE(del.ok());
  auto got = bucket_->Get("k");
  ASSERT_TRUE(got.status().IsNotFound());
  EXPECT_EQ(got.status().revision(), *del);
  EXPECT_TRUE(bucket_->Update("k", "v2", *del).ok());
  EXPECT_EQ(*bucket_->Get("k"), "v2");
}

TEST_F(BucketTest, DeleteWritesTombstoneThatReadsAsNotFound) {
  ASSERT_TRUE(bucket_->Put("k", "v").ok());
  auto del = bucket_->Delete("k");
  ASSERT_TRUE(del.ok());
  auto got = bucket_->Get("k");
  EXPECT_TRUE(got.status().IsNotFound());
  EXPECT_EQ(got.status().revision(), *del);
  auto entry = bucket_->GetEntry("k");
  EXPECT_TRUE(entry.status().IsNotFound());
  EXPECT_EQ(entry.status().revision(), *del);
}

TEST_F(BucketTest, DeleteOfAbsentKeyStillWritesTombstone) {
  auto del = bucket_->Delete("never");
  ASSERT_TRUE(del.ok());
  auto hist = bucket_->History("never");
  ASSERT_TRUE(hist.ok());
  ASSERT_EQ(hist->size(), 1u);
  EXPECT_EQ((*hist)[0].operation, Operation::kDelete);
}

TEST_F(BucketTest, DeleteAndPurgeWithExpectedRevisionAreCas) {
  auto r1 = bucket_->Put("k", "v");
  ASSERT_TRUE(r1.ok());
  auto bad = bucket_->Delete("k", *r1 + 7);
  EXPECT_TRUE(bad.status().IsConflict());
  EXPECT_EQ(bad.status().revision(), *r1);
  EXPECT_EQ(*bucket_->Get("k"), "v");
  auto bad_purge = bucket_->Purge("k", *r1 - 1);
  EXPECT_TRUE(bad_purge.status().IsConflict());
  EXPECT_EQ(*bucket_->Get("k"), "v");
  auto good = bucket_->Delete("k", *r1);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(bucket_->Purge("k", *good).ok());
  EXPECT_TRUE(bucket_->Get("k").status().IsNotFound());
}

TEST(BucketHistory, KeepsOnlyTheLastNRevisionsOldestFirst) {
  TempDir dir;
  auto engine = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(engine.ok());
  auto bucket = (*engine)->OpenBucket("h", {.history = 3});
  ASSERT_TRUE(bucket.ok());
  auto& b = *bucket;
  std::vector<uint64_t> revs;
  for (int i = 0; i < 5; ++i) revs.push_back(*b->Put("k", std::string("v") += std::to_string(i)));
  revs.push_back(*b->Delete("k"));
  auto hist = b->History("k");
  ASSERT_TRUE(hist.ok()) << hist.status().ToString();
  ASSERT_EQ(hist->size(), 3u);
  EXPECT_EQ((*hist)[0].revision, revs[3]);
  EXPECT_EQ((*hist)[0].value, "v3");
  EXPECT_EQ((*hist)[1].revision, revs[4]);
  EXPECT_EQ((*hist)[1].value, "v4");
  EXPECT_EQ((*hist)[2].revision, revs[5]);
  EXPECT_EQ((*hist)[2].operation, Operation::kDelete);
  for (const auto& e : *hist) EXPECT_EQ(e.key, "k");

  // The revision log holds exactly the retained revisions.
  auto changes = b->ChangesSince(0, 100);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 3u);
  EXPECT_EQ((*changes)[0].revision, revs[3]);
  EXPECT_EQ((*changes)[2].revision, revs[5]);
}

TEST(BucketHistory, DefaultHistoryIsOne) {
  TempDir dir;
  auto engine = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(engine.ok());
  auto b = *(*engine)->OpenBucket("h");
  EXPECT_EQ(b->history(), 1);
  ASSERT_TRUE(b->Put("k", "1").ok());
  auto last = b->Put("k", "2");
  auto hist = b->History("k");
  ASSERT_TRUE(hist.ok());
  ASSERT_EQ(hist->size(), 1u);
  EXPECT_EQ((*hist)[0].revision, *last);
}

TEST(BucketHistory, PurgeDropsEarlierRevisions) {
  TempDir dir;
  auto engine = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(engine.ok());
  auto b = *(*engine)->OpenBucket("h", {.history = 10});
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(b->Put("k", std::to_string(i)).ok());
  ASSERT_TRUE(b->Put("other", "x").ok());
  auto purge = b->Purge("k");
  ASSERT_TRUE(purge.ok());
  auto hist = b->History("k");
  ASSERT_TRUE(hist.ok());
  ASSERT_EQ(hist->size(), 1u);
  EXPECT_EQ((*hist)[0].operation, Operation::kPurge);
  EXPECT_EQ((*hist)[0].revision, *purge);
  auto changes = b->ChangesSince(0, 100);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 2u);  // "other" and the purge marker
  EXPECT_EQ((*changes)[0].key, "other");
  EXPECT_EQ((*changes)[1].key, "k");
}

TEST_F(BucketTest, HistoryOfUnknownKeyIsNotFound) {
  EXPECT_TRUE(bucket_->History("missing").status().IsNotFound());
}

TEST_F(BucketTest, KeysFiltersWithStarAndGreaterThan) {
  for (const char* k : {"a.b", "a.c", "a.b.c", "x", "ab", "d"}) ASSERT_TRUE(bucket_->Put(k, "v").ok());
  ASSERT_TRUE(bucket_->Delete("d").ok());
  using V = std::vector<std::string>;
  EXPECT_EQ(*bucket_->Keys(">"), (V{"a.b", "a.b.c", "a.c", "ab", "x"}));
  EXPECT_EQ(*bucket_->Keys(""), (V{"a.b", "a.b.c", "a.c", "ab", "x"}));
  EXPECT_EQ(*bucket_->Keys("a.*"), (V{"a.b", "a.c"}));
  EXPECT_EQ(*bucket_->Keys("a.>"), (V{"a.b", "a.b.c", "a.c"}));
  EXPECT_EQ(*bucket_->Keys("*.c"), (V{"a.c"}));
  EXPECT_EQ(*bucket_->Keys("*"), (V{"ab", "x"}));
  EXPECT_EQ(*bucket_->Keys("a"), V{});
  EXPECT_EQ(*bucket_->Keys("x"), (V{"x"}));
  EXPECT_EQ(*bucket_->Keys("d"), V{});
  // A token holding '*' among other characters is literal, as in NATS: a
  // key another client stored may hold it.
  EXPECT_EQ(*bucket_->Keys("a*"), V{});
  EXPECT_TRUE(bucket_->Keys("a.>.b").status().IsInvalidArgument());
  EXPECT_TRUE(bucket_->Keys("a..b").status().IsInvalidArgument());
  EXPECT_TRUE(bucket_->Keys("a b").status().IsInvalidArgument());
}

TEST_F(BucketTest, KeysAfterPagesThroughTheKeysInOrder) {
  for (int i = 0; i < 25; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "k.%02d", i);
    ASSERT_TRUE(bucket_->Put(key, "v").ok());
  }
  ASSERT_TRUE(bucket_->Put("other", "v").ok());
  ASSERT_TRUE(bucket_->Delete("k.07").ok());  // tombstones are no page entries
  using V = std::vector<std::string>;
  auto all = bucket_->Keys("k.>");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 24u);
  V paged;
  std::string after;
  int pages = 0;
  while (true) {
    auto page = bucket_->KeysAfter("k.>", after, 5);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    ++pages;
    paged.insert(paged.end(), page->begin(), page->end());
    if (page->size() < 5) break;
    after = page->back();
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(paged, *all);
  EXPECT_EQ(pages, 5);  // 5+5+5+5+4
  EXPECT_EQ(*bucket_->KeysAfter(">", "k.23", 3), (V{"k.24", "other"}));
  EXPECT_EQ(*bucket_->KeysAfter(">", "a", 2), (V{"k.00", "k.01"})) << "`after` need not exist";
  EXPECT_EQ(*bucket_->KeysAfter("k.>", "k.06", 1), (V{"k.08"}));
  EXPECT_EQ(*bucket_->KeysAfter("k.>", "zzz", 4), V{});
  EXPECT_TRUE(bucket_->KeysAfter(">", "", 0).status().IsInvalidArgument());
  EXPECT_TRUE(bucket_->KeysAfter("a..b", "", 1).status().IsInvalidArgument());
}

TEST_F(BucketTest, ChangesSinceReturnsRetainedEntriesInOrderWithLimit) {
  ASSERT_TRUE(bucket_->Put("a", "1").ok());  // 1, replaced by 2 (history 1)
  ASSERT_TRUE(bucket_->Put("a", "2").ok());  // 2
  ASSERT_TRUE(bucket_->Put("b", "3").ok());  // 3
  ASSERT_TRUE(bucket_->Delete("c").ok());    // 4
  auto all = bucket_->ChangesSince(0, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].revision, 2u);
  EXPECT_EQ((*all)[0].value, "2");
  EXPECT_EQ((*all)[1].key, "b");
  EXPECT_EQ((*all)[2].operation, Operation::kDelete);
  auto limited = bucket_->ChangesSince(2, 1);
  ASSERT_TRUE(limited.ok());
  ASSERT_EQ(limited->size(), 1u);
  EXPECT_EQ((*limited)[0].revision, 3u);
  EXPECT_TRUE(bucket_->ChangesSince(0, 0).status().IsInvalidArgument());
}

TEST_F(BucketTest, DataRevisionsAndSettingsPersistAcrossReopen) {
  bucket_.reset();
  auto h = OpenBucket("hist", {.history = 4, .max_value_size = 4096});
  ASSERT_TRUE(h);
  ASSERT_TRUE(h->Put("k", "1").ok());
  ASSERT_TRUE(h->Put("k", "2").ok());
  auto last = h->Delete("gone");
  ASSERT_TRUE(last.ok());
  h.reset();
  Reopen();
  auto h2 = OpenBucket("hist");
  ASSERT_TRUE(h2);
  EXPECT_EQ(h2->history(), 4);
  EXPECT_EQ(h2->max_value_size(), 4096u);
  EXPECT_EQ(*h2->Get("k"), "2");
  EXPECT_EQ(h2->History("k")->size(), 2u);
  EXPECT_TRUE(h2->Get("gone").status().IsNotFound());
  EXPECT_EQ(h2->LastRevision(), *last);
  auto next = h2->Put("k", "3");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, *last + 1);
  auto buckets = engine_->ListBuckets();
  EXPECT_EQ(buckets, (std::vector<std::string>{"default", "hist"}));
}

TEST_F(BucketTest, BucketsHaveIndependentRevisions) {
  auto other = OpenBucket("other");
  ASSERT_TRUE(bucket_->Put("k", "a").ok());
  ASSERT_TRUE(bucket_->Put("k", "b").ok());
  auto r = other->Put("k", "c");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 1u);
  EXPECT_EQ(*bucket_->Get("k"), "b");
  EXPECT_EQ(*other->Get("k"), "c");
}

TEST_F(BucketTest, OpeningAnOpenBucketReturnsTheSameObject) {
  auto again = OpenBucket("default");
  EXPECT_EQ(again.get(), bucket_.get());
}

TEST_F(BucketTest, SettingMismatchIsInvalidArgumentListingDifferences) {
  ASSERT_TRUE(OpenBucket("cfg", {.history = 3, .max_value_size = 1000}));
  auto bad = engine_->OpenBucket("cfg", {.history = 5, .max_value_size = 2000});
  ASSERT_TRUE(bad.status().IsInvalidArgument());
  std::string msg(bad.status().message());
  EXPECT_NE(msg.find("history 3 (asked 5)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("max_value_size 1000 (asked 2000)"), std::string::npos) << msg;
  EXPECT_TRUE(engine_->OpenBucket("cfg", {.history = 3}).ok());
}

TEST_F(BucketTest, BadKeysAreRejectedAndWriteNothing) {
  ASSERT_TRUE(bucket_->Put("ok", "v").ok());
  const uint64_t before = bucket_->LastRevision();
  for (const std::string& key :
       std::vector<std::string>{"", ".a", "a.", "a..b", "a b", "a*", "x>", "tab\t", "ü",
                                std::string(kMaxKeyLength + 1, 'k')}) {
    EXPECT_TRUE(bucket_->Put(key, "v").status().IsInvalidArgument()) << key;
    EXPECT_TRUE(bucket_->Create(key, "v").status().IsInvalidArgument()) << key;
    EXPECT_TRUE(bucket_->Update(key, "v", 1).status().IsInvalidArgument()) << key;
    EXPECT_TRUE(bucket_->Delete(key).status().IsInvalidArgument()) << key;
    EXPECT_TRUE(bucket_->Purge(key).status().IsInvalidArgument()) << key;
    // Reads take every key a replica can hold (another client may have
    // stored "a*", "ü" or a long key): absent here, but not invalid.
    const bool holdable = ValidateReadKey(key).ok();
    EXPECT_EQ(holdable, key == "a*" || key == "x>" || key == "ü" || key.size() > kMaxKeyLength)
        << key;
    EXPECT_EQ(bucket_->Get(key).status().code(),
              holdable ? Code::kNotFound : Code::kInvalidArgument)
        << key;
    EXPECT_EQ(bucket_->History(key).status().code(),
              holdable ? Code::kNotFound : Code::kInvalidArgument)
        << key;
  }
  EXPECT_EQ(bucket_->LastRevision(), before);
  EXPECT_EQ(*bucket_->Keys(">"), std::vector<std::string>{"ok"});
}

TEST_F(BucketTest, BadBucketNamesAndSettingsAreInvalidArgument) {
  for (const char* name : {"", "a.b", "a b", "a/b", "é"}) {
    auto b = engine_->OpenBucket(name);
    EXPECT_TRUE(b.status().IsInvalidArgument()) << name;
  }
  EXPECT_TRUE(engine_->OpenBucket("h65", {.history = 65}).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->OpenBucket("hneg", {.history = -1}).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->OpenBucket("big", {.max_value_size = kMaxMaxValueSize + 1})
                  .status()
                  .IsInvalidArgument());
  EXPECT_EQ(engine_->ListBuckets(), std::vector<std::string>{"default"});
}

TEST_F(BucketTest, OversizeValueIsRefusedNeverTruncated) {
  auto small = OpenBucket("small", {.max_value_size = 100});
  ASSERT_TRUE(small);
  EXPECT_TRUE(small->Put("k", std::string(100, 'x')).ok());
  auto big = small->Put("k", std::string(101, 'y'));
  EXPECT_TRUE(big.status().IsInvalidArgument());
  EXPECT_NE(big.status().message().find("101 bytes"), std::string_view::npos);
  EXPECT_TRUE(small->Create("new", std::string(101, 'y')).status().IsInvalidArgument());
  EXPECT_EQ(*small->Get("k"), std::string(100, 'x'));
  EXPECT_EQ(small->LastRevision(), 1u);

  EXPECT_EQ(bucket_->max_value_size(), kDefaultMaxValueSize);
  EXPECT_TRUE(bucket_->Put("k", std::string(kDefaultMaxValueSize + 1, 'z')).status().IsInvalidArgument());
  EXPECT_TRUE(bucket_->Put("k", std::string(kDefaultMaxValueSize, 'z')).ok());
}

TEST(EngineOpen, SecondOpenInSameProcessIsUnavailable) {
  TempDir dir;
  auto first = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(first.ok());
  auto second = Engine::Open({.path = dir.path()});
  EXPECT_TRUE(second.status().IsUnavailable()) << second.status().ToString();
}

TEST(EngineOpen, StoreHeldByAnotherProcessIsUnavailableAndUntouched) {
  TempDir dir;
  {
    auto e = Engine::Open({.path = dir.path()});
    ASSERT_TRUE(e.ok());
    ASSERT_TRUE((*(*e)->OpenBucket("default"))->Put("k", "v").ok());
  }
  int ready[2], release[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(release), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto e = Engine::Open({.path = dir.path()});
    char c = e.ok() ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1) _exit(3);
    if (read(release[0], &c, 1) < 0) _exit(4);
    _exit(e.ok() ? 0 : 2);
  }
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  // A refused open touches nothing in the store: not even the holder's
  // info LOG is rotated.
  auto listing = [&] {
    std::set<std::string> names;
    for (const auto& f : std::filesystem::directory_iterator(dir.path())) {
      names.insert(f.path().filename().string());
    }
    return names;
  };
  const auto before = listing();
  for (int i = 0; i < 3; ++i) {
    auto held = Engine::Open({.path = dir.path()});
    EXPECT_TRUE(held.status().IsUnavailable()) << held.status().ToString();
    EXPECT_NE(held.status().message().find("held by another"), std::string_view::npos);
  }
  EXPECT_EQ(listing(), before);
  ASSERT_EQ(write(release[1], "x", 1), 1);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  for (int fd : {ready[0], ready[1], release[0], release[1]}) close(fd);

  auto after = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  auto b = *(*after)->OpenBucket("default");
  EXPECT_EQ(*b->Get("k"), "v");
  EXPECT_EQ(b->LastRevision(), 1u);
}

TEST(EngineOpen, MissingStoreWithoutCreateIsNotFound) {
  TempDir dir;
  auto e = Engine::Open({.path = dir.Sub("absent"), .create_if_missing = false});
  EXPECT_TRUE(e.status().IsNotFound()) << e.status().ToString();
  EXPECT_TRUE(Engine::Open({.path = ""}).status().IsInvalidArgument());
}

TEST(EngineOpen, SyncedWritesAreReadBackAfterReopen) {
  TempDir dir;
  {
    auto e = Engine::Open({.path = dir.path(), .sync = true});
    ASSERT_TRUE(e.ok());
    ASSERT_TRUE((*(*e)->OpenBucket("b"))->Put("k", "durable").ok());
  }
  auto e = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*(*(*e)->OpenBucket("b"))->Get("k"), "durable");
}

TEST(Follower, SeesHolderCommitsAfterCatchUpAndRefusesWrites) {
  TempDir dir;
  auto holder = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(holder.ok());
  auto hb = *(*holder)->OpenBucket("b");
  ASSERT_TRUE(hb->Put("k", "1").ok());

  auto follower = Engine::Open({.path = dir.path(), .read_only_follower = true});
  ASSERT_TRUE(follower.ok()) << follower.status().ToString();
  auto fb = (*follower)->OpenBucket("b");
  ASSERT_TRUE(fb.ok()) << fb.status().ToString();
  EXPECT_EQ(*(*fb)->Get("k"), "1");
  EXPECT_TRUE((*fb)->Put("k", "x").status().IsInvalidArgument());
  EXPECT_TRUE((*follower)->OpenBucket("absent").status().IsNotFound());

  ASSERT_TRUE(hb->Put("k", "2").ok());
  ASSERT_TRUE((*follower)->CatchUp().ok());
  EXPECT_EQ(*(*fb)->Get("k"), "2");
  EXPECT_EQ((*fb)->LastRevision(), 2u);
  EXPECT_TRUE((*holder)->CatchUp().IsInvalidArgument());
}

TEST(Concurrency, CasIncrementsFromManyThreadsLoseNoUpdate) {
  TempDir dir;
  auto engine = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(engine.ok());
  auto b = *(*engine)->OpenBucket("counter");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 250;
  std::atomic<int> successes{0}, conflicts{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      int mine = 0;
      while (mine < kPerThread) {
        auto e = b->GetEntry("n");
        uint64_t rev = 0;
        long value = 0;
        if (e.ok()) {
          rev = e->revision;
          value = std::stol(e->value);
        } else if (!e.status().IsNotFound()) {
          ++errors;
          return;
        }
        auto r = rev == 0 ? b->Create("n", std::to_string(value + 1))
                          : b->Update("n", std::to_string(value + 1), rev);
        if (r.ok()) {
          ++mine;
          ++successes;
        } else if (r.status().IsConflict() || r.status().IsExists()) {
          ++conflicts;
        } else {
          ++errors;
          return;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(successes.load(), kThreads * kPerThread);
  EXPECT_EQ(std::stol(*b->Get("n")), successes.load());
  // Each success took exactly one revision; conflicts took none.
  EXPECT_EQ(b->LastRevision(), static_cast<uint64_t>(successes.load()));
}

TEST(Concurrency, ParallelPutsOnDistinctKeysGetUniqueRevisions) {
  TempDir dir;
  auto engine = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(engine.ok());
  auto b = *(*engine)->OpenBucket("p");
  constexpr int kThreads = 4, kPer = 500;
  std::vector<std::vector<uint64_t>> revs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        std::string key = "t";
        key += std::to_string(t);
        key += ".";
        key += std::to_string(i);
        auto r = b->Put(key, "v");
        if (r.ok()) revs[t].push_back(*r);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<uint64_t> all;
  for (auto& v : revs) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kPer));
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], i + 1);
}

TEST(Corruption, DamagedRecordReadsAsCorruptionNotACrash) {
  TempDir dir;
  auto opened = engine::LocalEngine::Open({.path = dir.path()});
  ASSERT_TRUE(opened.ok());
  auto& eng = *opened;
  auto b = *eng->OpenBucket("b", {.history = 3});
  ASSERT_TRUE(b->Put("good", "fine").ok());
  ASSERT_TRUE(b->Put("bad", "v1").ok());
  ASSERT_TRUE(b->Put("bad", "v2").ok());
  auto* cf = static_cast<engine::LocalBucket*>(b.get())->TEST_family();

  // Garbage of a whole number of words, then of an odd size.
  for (std::string junk : {std::string(24, '\xee'), std::string("\x01\x02\x03", 3),
                           std::string("\0\0\0\0\x10\0\0\0", 8) + std::string(16, '\x7f')}) {
    ASSERT_TRUE(eng->TEST_db()
                    ->Put(rocksdb::WriteOptions(), cf, engine::LatestKey("bad"), junk)
                    .ok());
    EXPECT_TRUE(b->Get("bad").status().IsCorruption()) << b->Get("bad").status().ToString();
    EXPECT_TRUE(b->GetEntry("bad").status().IsCorruption());
    EXPECT_TRUE(b->History("bad").status().IsCorruption());
    EXPECT_TRUE(b->Keys(">").status().IsCorruption());
    EXPECT_TRUE(b->Update("bad", "v3", 2).status().IsCorruption());
    EXPECT_TRUE(b->Put("bad", "v3").status().IsCorruption());
    EXPECT_EQ(*b->Get("good"), "fine");
    EXPECT_TRUE(b->Keys("good").ok());
  }
}

}  // namespace
}  // namespace revkv
