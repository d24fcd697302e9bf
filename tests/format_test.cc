// Stores written by an earlier revkv still open: tests/data/store-format-1 is
// a store of format 1, written once by tests/format/make_store.cc and
// committed. Opened from a copy, every entry, history, tombstone, TTL,
// revision counter and replica record reads back as that program wrote it,
// and writes go on from the stored revisions. A revkv that changes the
// layout must migrate this store at open and keep this test passing.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

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

class FormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::copy(REVKV_FORMAT1_STORE, dir_.path(),
                          std::filesystem::copy_options::recursive);
    auto e = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
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

  static std::vector<uint64_t> Revisions(Bucket& b) {
    std::vector<uint64_t> out;
    auto changes = b.ChangesSince(0, 1000);
    EXPECT_TRUE(changes.ok()) << changes.status().ToString();
    if (!changes.ok()) return out;
    int64_t last_created = 0;
    for (const Entry& e : *changes) {
      out.push_back(e.revision);
      EXPECT_GE(e.created_ns, last_created) << "revision " << e.revision;
      last_created = e.created_ns;
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(FormatTest, EveryEntryOfAFormat1StoreReadsBack) {
  auto h5 = Open("h5");
  ASSERT_NE(h5, nullptr);
  EXPECT_EQ(h5->history(), 5);
  EXPECT_EQ(h5->LastRevision(), 17u);
  const Operation put = Operation::kPut;
  ExpectHistory(*h5, "a",
                {{13, put, "a5"}, {14, put, "a6"}, {15, put, "a7"}, {16, put, "a8"},
                 {17, put, "a9"}});
  ExpectHistory(*h5, "b", {{2, put, "b1"}, {5, Operation::kDelete, ""}});
  ExpectHistory(*h5, "c", {{7, Operation::kPurge, ""}});
  ExpectHistory(*h5, "d", {{8, put, std::string("\x00\x01\xff", 3)}});
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
  EXPECT_EQ(Revisions(*h5), (std::vector<uint64_t>{2, 5, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17}));

  auto h1 = Open("h1");
  ASSERT_NE(h1, nullptr);
  EXPECT_EQ(h1->history(), 1);
  EXPECT_EQ(h1->max_value_size(), 4096u);
  EXPECT_EQ(h1->LastRevision(), 4u);
  auto x = h1->GetEntry("x");
  ASSERT_TRUE(x.ok()) << x.status().ToString();
  EXPECT_EQ(x->value, "x2");
  EXPECT_EQ(x->revision, 2u);
  EXPECT_EQ(x->ttl_ns, kFiftyYearsNs);
  ExpectHistory(*h1, "y", {{4, Operation::kDelete, ""}});
  EXPECT_EQ(Revisions(*h1), (std::vector<uint64_t>{2, 4}));

  auto rep = Open("rep");
  ASSERT_NE(rep, nullptr);
  EXPECT_EQ(rep->LastRevision(), 15u) << "the applied revision moves past gaps and skips";
  ExpectHistory(*rep, "r.1", {{10, put, "v10"}, {13, Operation::kDelete, ""}});
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

}  // namespace
}  // namespace revkv
