// Stores written by an earlier revkv still open: tests/data/store-format-1 is
// a store of format 1, written once by tests/format/make_store.cc and
// committed. Opened from a copy, the store is upgraded to the current format
// (engine/layout.h), and every entry, history, tombstone, TTL, revision,
// the revision log's order and the replica's records read back as that
// program wrote them; writes go on from the stored revisions, a second open
// changes nothing, and a read-only follower reads the old format as it is.
// A revkv that changes the layout must migrate this store at open and keep
// this test passing.

#include <gtest/gtest.h>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "engine/layout.h"
#include "engine/local_bucket.h"
#include "engine/local_engine.h"
#include "engine/commit_path.h"
#include "engine/replica_sink.h"
#include "revkv/revkv.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using testing::TempDir;

constexpr int64_t kFiftyYearsNs = int64_t{24} * 365 * 50 * 3600 * 1000000000;

struct Want {
  uint64_t revision;
  Operation op;
  std::string value;
};

// One revision of the revision log (ChangesSince), as written.
struct LogWant {
  uint64_t revision;
  std::string key;
  Operation op;
  std::string value;
  int64_t ttl_ns = 0;
};

// Every record of every column family of the store at `path`, by family.
using RawStore = std::map<std::string, std::map<std::string, std::string>>;

RawStore DumpStore(const std::string& path) {
  RawStore out;
  std::vector<std::string> names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(rocksdb::Options(), path, &names);
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  s = rocksdb::DB::OpenForReadOnly(rocksdb::Options(), path, cfs, &handles, &db);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return out;
  for (size_t i = 0; i < names.size(); ++i) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[i]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out[names[i]][it->key().ToString()] = it->value().ToString();
    }
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  delete db;
  return out;
}

// Sets the store's format version, as a revkv of that version would have.
void SetFormat(const std::string& path, uint64_t version) {
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::Options(), path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), path, cfs, &handles, &db).ok());
  std::string v;
  engine::AppendBE64(&v, version);
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == engine::kMetaFamily) {
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[i], "format", v).ok());
    }
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  delete db;
}

uint64_t FormatOf(const RawStore& raw) {
  auto meta = raw.find(engine::kMetaFamily);
  if (meta == raw.end()) return 0;
  auto f = meta->second.find("format");
  return f == meta->second.end() ? 0 : engine::DecodeBE64(f->second);
}

class FormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::copy(REVKV_FORMAT1_STORE, dir_.path(),
                          std::filesystem::copy_options::recursive);
    ASSERT_EQ(FormatOf(DumpStore(dir_.path())), 1u);
    auto e = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
  }

  // Closes the engine and the buckets the test let go of.
  void Close() { engine_.reset(); }

  // The revision log of `b` from its start, as ChangesSince returns it.
  static void ExpectLog(Bucket& b, const std::vector<LogWant>& want) {
    auto changes = b.ChangesSince(0, 1000);
    ASSERT_TRUE(changes.ok()) << changes.status().ToString();
    ASSERT_EQ(changes->size(), want.size()) << b.name();
    for (size_t i = 0; i < want.size(); ++i) {
      const Entry& e = (*changes)[i];
      EXPECT_EQ(e.revision, want[i].revision) << b.name() << " #" << i;
      EXPECT_EQ(e.key, want[i].key) << b.name() << " #" << i;
      EXPECT_EQ(e.operation, want[i].op) << b.name() << " #" << i;
      EXPECT_EQ(e.value, want[i].value) << b.name() << " #" << i;
      EXPECT_EQ(e.ttl_ns, want[i].ttl_ns) << b.name() << " #" << i;
      if (i > 0) {
        EXPECT_GE(e.created_ns, (*changes)[i - 1].created_ns) << b.name() << " #" << i;
      }
    }
  }

  // Every entry of every bucket of the committed store, read through the
  // public API (the store may be of either format).
  void ExpectEveryEntry(Engine& engine) {
    auto open = [&](const std::string& name) {
      auto b = engine.OpenBucket(name, {.create_if_missing = false});
      EXPECT_TRUE(b.ok()) << name << ": " << b.status().ToString();
      return b.ok() ? *b : nullptr;
    };
    const Operation put = Operation::kPut, del = Operation::kDelete, purge = Operation::kPurge;
    auto h5 = open("h5");
    ASSERT_NE(h5, nullptr);
    EXPECT_EQ(h5->history(), 5);
    EXPECT_EQ(h5->LastRevision(), 17u);
    ExpectLog(*h5, {{2, "b", put, "b1"},
                    {5, "b", del, ""},
                    {7, "c", purge, ""},
                    {8, "d", put, std::string("\x00\x01\xff", 3)},
                    {9, "e", put, "e1", kFiftyYearsNs},
                    {10, "f", put, "f1"},
                    {11, "g.x", put, "g1"},
                    {13, "a", put, "a5"},
                    {14, "a", put, "a6"},
                    {15, "a", put, "a7"},
                    {16, "a", put, "a8"},
                    {17, "a", put, "a9"}});
    ExpectHistory(*h5, "a", {{13, put, "a5"}, {14, put, "a6"}, {15, put, "a7"}, {16, put, "a8"},
                             {17, put, "a9"}});
    ExpectHistory(*h5, "b", {{2, put, "b1"}, {5, del, ""}});
    ExpectHistory(*h5, "c", {{7, purge, ""}});
    ExpectHistory(*h5, "d", {{8, put, std::string("\x00\x01\xff", 3)}});
    ExpectHistory(*h5, "e", {{9, put, "e1"}});
    ExpectHistory(*h5, "f", {{10, put, "f1"}});
    ExpectHistory(*h5, "g.x", {{11, put, "g1"}});
    auto e = h5->GetEntry("e");
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->value, "e1");
    EXPECT_EQ(e->revision, 9u);
    EXPECT_EQ(e->ttl_ns, kFiftyYearsNs);
    EXPECT_EQ(h5->Get("b").status().revision(), 5u);
    EXPECT_TRUE(h5->Get("c").status().IsNotFound());
    auto keys = h5->Keys(">");
    ASSERT_TRUE(keys.ok());
    EXPECT_EQ(*keys, (std::vector<std::string>{"a", "d", "e", "f", "g.x"}));
    auto entries = h5->Entries(">");
    ASSERT_TRUE(entries.ok()) << entries.status().ToString();
    EXPECT_EQ(entries->revision, 17u);
    ASSERT_EQ(entries->entries.size(), 5u);
    auto many = h5->GetMany({"a", "b", "c", "zz"});
    ASSERT_TRUE(many.ok()) << many.status().ToString();
    EXPECT_EQ(many->revision, 17u);
    EXPECT_EQ(many->keys[0].revision, 17u);
    EXPECT_EQ(many->keys[1].revision, 5u);
    EXPECT_FALSE(many->keys[1].entry.has_value());
    EXPECT_EQ(many->keys[2].revision, 7u);
    EXPECT_EQ(many->keys[3].revision, 0u);

    auto h1 = open("h1");
    ASSERT_NE(h1, nullptr);
    EXPECT_EQ(h1->history(), 1);
    EXPECT_EQ(h1->max_value_size(), 4096u);
    EXPECT_EQ(h1->LastRevision(), 4u);
    ExpectLog(*h1, {{2, "x", put, "x2", kFiftyYearsNs}, {4, "y", del, ""}});
    ExpectHistory(*h1, "x", {{2, put, "x2"}});
    ExpectHistory(*h1, "y", {{4, del, ""}});
    auto x = h1->GetEntry("x");
    ASSERT_TRUE(x.ok()) << x.status().ToString();
    EXPECT_EQ(x->ttl_ns, kFiftyYearsNs);

    auto rep = open("rep");
    ASSERT_NE(rep, nullptr);
    EXPECT_EQ(rep->history(), 2);
    EXPECT_EQ(rep->LastRevision(), 15u) << "the applied revision moves past gaps and skips";
    ExpectLog(*rep, {{10, "r.1", put, "v10"}, {12, "r.2", put, "v12"}, {13, "r.1", del, ""}});
    ExpectHistory(*rep, "r.1", {{10, put, "v10"}, {13, del, ""}});
    ExpectHistory(*rep, "r.2", {{12, put, "v12"}});
    auto r2 = rep->GetEntry("r.2");
    ASSERT_TRUE(r2.ok());
    EXPECT_EQ(r2->created_ns, 1700000002000000000);
    auto sink = std::dynamic_pointer_cast<engine::ReplicaSink>(rep);
    ASSERT_NE(sink, nullptr);
    auto source = sink->ReplicaSource();
    ASSERT_TRUE(source.ok());
    EXPECT_EQ(*source, 1700000000123456789);
    auto skipped = sink->Skipped();
    ASSERT_TRUE(skipped.ok());
    EXPECT_EQ(skipped->count, 1u);
    EXPECT_EQ(skipped->first_revision, 11u);
    EXPECT_EQ(skipped->first_reason, "its payload is damaged");
  }

  std::shared_ptr<Bucket> Open(const std::string& name) {
    auto b = engine_->OpenBucket(name, {.create_if_missing = false});
    EXPECT_TRUE(b.ok()) << name << ": " << b.status().ToString();
    return b.ok() ? *b : nullptr;
  }

  static void ExpectHistory(Bucket& b, const std::string& key, const std::vector<Want>& want) {
    auto h = b.History(key);
    ASSERT_TRUE(h.ok()) << key << ": " << h.status().ToString();
    ASSERT_EQ(h->size(), want.size()) << key;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ((*h)[i].key, key);
      EXPECT_EQ((*h)[i].revision, want[i].revision) << key << " #" << i;
      EXPECT_EQ((*h)[i].operation, want[i].op) << key << " #" << i;
      EXPECT_EQ((*h)[i].value, want[i].value) << key << " #" << i;
    }
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(FormatTest, EveryEntryOfAFormat1StoreReadsBackAfterTheUpgrade) {
  ExpectEveryEntry(*engine_);
  Close();
  EXPECT_EQ(FormatOf(DumpStore(dir_.path())), engine::kStoreFormatVersion);
}

TEST_F(FormatTest, TheUpgradeRewritesOnlyTheFormatAndASecondOpenChangesNothing) {
  Close();
  RawStore upgraded = DumpStore(dir_.path());
  TempDir original;
  std::filesystem::copy(REVKV_FORMAT1_STORE, original.path(),
                        std::filesystem::copy_options::recursive);
  RawStore v1 = DumpStore(original.path());
  ASSERT_EQ(FormatOf(upgraded), engine::kStoreFormatVersion);
  v1[engine::kMetaFamily]["format"] = upgraded[engine::kMetaFamily]["format"];
  EXPECT_EQ(upgraded, v1) << "format 1 is a valid state of format 2";

  for (int i = 0; i < 2; ++i) {
    auto e = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    ExpectEveryEntry(**e);
  }
  EXPECT_EQ(DumpStore(dir_.path()), upgraded) << "opening an upgraded store wrote something";
}

TEST(FormatFollowerTest, AFollowerReadsAFormat1StoreWithoutUpgradingIt) {
  TempDir dir;
  std::filesystem::copy(REVKV_FORMAT1_STORE, dir.path(), std::filesystem::copy_options::recursive);
  const RawStore before = DumpStore(dir.path());
  {
    auto follower = Engine::Open({.path = dir.path(), .read_only_follower = true});
    ASSERT_TRUE(follower.ok()) << follower.status().ToString();
    auto b = (*follower)->OpenBucket("h5", {.create_if_missing = false});
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ((*b)->LastRevision(), 17u);
    auto a = (*b)->History("a");
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    EXPECT_EQ(a->size(), 5u);
    auto changes = (*b)->ChangesSince(0, 100);
    ASSERT_TRUE(changes.ok()) << changes.status().ToString();
    EXPECT_EQ(changes->size(), 12u);
    auto rep = (*follower)->OpenBucket("rep", {.create_if_missing = false});
    ASSERT_TRUE(rep.ok()) << rep.status().ToString();
    EXPECT_EQ((*rep)->LastRevision(), 15u);
  }
  EXPECT_EQ(DumpStore(dir.path()), before) << "a follower must not write";
}

TEST(FormatVersionTest, ANewerFormatIsAClearError) {
  TempDir dir;
  {
    auto e = Engine::Open({.path = dir.path()});
    ASSERT_TRUE(e.ok()) << e.status().ToString();
  }
  SetFormat(dir.path(), engine::kStoreFormatVersion + 1);
  auto e = Engine::Open({.path = dir.path()});
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(e.status().IsInvalidArgument()) << e.status().ToString();
  EXPECT_NE(e.status().message().find("format version " +
                                      std::to_string(engine::kStoreFormatVersion + 1)),
            std::string::npos)
      << e.status().ToString();
  auto follower = Engine::Open({.path = dir.path(), .read_only_follower = true});
  EXPECT_TRUE(follower.status().IsInvalidArgument()) << follower.status().ToString();
}

TEST_F(FormatTest, WritesGoOnFromTheStoredRevisions) {
  auto h5 = Open("h5");
  ASSERT_NE(h5, nullptr);
  auto r = h5->Update("a", "a10", 17);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 18u);
  EXPECT_TRUE(h5->Update("f", "stale", 9).status().IsConflict());
  EXPECT_EQ(*h5->Create("b", "b2"), 19u) << "a Create after a tombstone";
  ExpectHistory(*h5, "a",
                {{14, Operation::kPut, "a6"}, {15, Operation::kPut, "a7"},
                 {16, Operation::kPut, "a8"}, {17, Operation::kPut, "a9"},
                 {18, Operation::kPut, "a10"}});
  auto h1 = Open("h1");
  ASSERT_NE(h1, nullptr);
  EXPECT_EQ(*h1->Create("y", "y2"), 5u);
}

// Format 2's revision log (engine/layout.h): local commits write the
// revision floor and delete the log records they replaced only every
// CommitPath::kFloorCommits commits; an open after a close or crash in
// between rebuilds the revision from the log and finishes those deletes.
TEST(RevisionLogTest, AnOpenRebuildsTheRevisionAndFinishesDeferredTrims) {
  TempDir dir;
  const std::string log_family = engine::LogFamily("b");
  const std::string counter = engine::CounterKey("b");
  constexpr uint64_t kWrites = 10;  // fewer than kFloorCommits
  static_assert(kWrites < engine::CommitPath::kFloorCommits);
  {
    auto e = Engine::Open({.path = dir.path()});
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    auto b = (*e)->OpenBucket("b");
    ASSERT_TRUE(b.ok());
    for (uint64_t i = 1; i <= kWrites; ++i) {
      ASSERT_EQ(*(*b)->Put("k", "v" + std::to_string(i)), i);
    }
  }
  // As a crash would leave it: every commit's log record, none trimmed, and
  // no floor past the first open's.
  RawStore raw = DumpStore(dir.path());
  EXPECT_EQ(raw[log_family].size(), kWrites);
  EXPECT_EQ(engine::DecodeBE64(raw[engine::kMetaFamily][counter]), 0u);
  {
    auto e = Engine::Open({.path = dir.path()});
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    auto b = (*e)->OpenBucket("b");
    ASSERT_TRUE(b.ok());
    EXPECT_EQ((*b)->LastRevision(), kWrites);
    auto changes = (*b)->ChangesSince(0, 100);
    ASSERT_TRUE(changes.ok());
    ASSERT_EQ(changes->size(), 1u);
    EXPECT_EQ(changes->front().revision, kWrites);
    EXPECT_EQ(*(*b)->Put("k", "next"), kWrites + 1) << "revisions go on from the log";
  }
  raw = DumpStore(dir.path());
  ASSERT_EQ(raw[log_family].size(), 2u) << "the reopen trimmed the log; the last Put is pending";
  EXPECT_EQ(engine::DecodeBE64(raw[engine::kMetaFamily][counter]), kWrites);
}

TEST(RevisionLogTest, EveryFloorCommitsTheLogIsTrimmedWhileRunning) {
  TempDir dir;
  auto e = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto b = (*e)->OpenBucket("b");
  ASSERT_TRUE(b.ok());
  constexpr uint64_t kWrites = engine::CommitPath::kFloorCommits * 3;
  for (uint64_t i = 1; i <= kWrites; ++i) {
    ASSERT_TRUE((*b)->Put("k." + std::to_string(i % 4), "v").ok());
    // A reader in between sees only retained revisions, in order.
    if (i % 37 == 0) {
      auto changes = (*b)->ChangesSince(0, 100);
      ASSERT_TRUE(changes.ok()) << changes.status().ToString();
      ASSERT_EQ(changes->size(), std::min<uint64_t>(i, 4));
      for (size_t j = 1; j < changes->size(); ++j) {
        EXPECT_LT((*changes)[j - 1].revision, (*changes)[j].revision);
      }
      EXPECT_EQ(changes->back().revision, i);
    }
  }
  auto* local = dynamic_cast<engine::LocalBucket*>(b->get());
  ASSERT_NE(local, nullptr);
  std::unique_ptr<rocksdb::Iterator> it(
      local->db()->NewIterator(rocksdb::ReadOptions(), local->TEST_log_family()));
  size_t records = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++records;
  EXPECT_EQ(records, 4u) << "the last floor, at " << kWrites << ", trimmed every replaced record";
}

// A replica reset by format 1 deleted its revision log with a range starting
// at the 8-byte revision 0. Replayed from the write-ahead log of an upgraded
// store, that range tombstone must not share the log family's memtable
// insert hint with the revision keys (engine/rocks.cc).
TEST(RevisionLogTest, AFormat1ResetReplayedFromTheWriteAheadLogIsSafe) {
  TempDir dir;
  {
    auto e = Engine::Open({.path = dir.path()});
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    ASSERT_TRUE((*e)->OpenBucket("r").ok());
  }
  {
    // What format 1's ResetReplica wrote, left in the write-ahead log.
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::Options(), dir.path(), &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir.path(), cfs, &handles, &db).ok());
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] != engine::LogFamily("r")) continue;
      rocksdb::WriteBatch batch;
      for (uint64_t r = 1; r <= 3; ++r) batch.Put(handles[i], engine::RevisionKey(r), "k");
      batch.DeleteRange(handles[i], std::string(8, '\0'), std::string(9, '\xff'));
      ASSERT_TRUE(db->Write(rocksdb::WriteOptions(), &batch).ok());
    }
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  auto e = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto b = (*e)->OpenBucket("r");
  ASSERT_TRUE(b.ok());
  for (int i = 0; i < 300; ++i) ASSERT_TRUE((*b)->Put("k." + std::to_string(i % 7), "v").ok());
  auto changes = (*b)->ChangesSince(0, 1000);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  EXPECT_EQ(changes->size(), 7u);
  EXPECT_EQ((*b)->LastRevision(), 300u);
}

}  // namespace
}  // namespace revkv
