// Watch: where a watch starts (kLatest, kFromRevision, kUpdatesOnly),
// filters, ordering without gaps or duplicates under concurrent writers, slow
// consumers that never block writers, Next timeouts, Cancel, callback
// watches, and bad input.
//
// Suite names are lower-case so that `ctest -R watch` selects them.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "revkv/revkv.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::TempDir;

using testing::MsSince;

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// prefix + i (spelled out: GCC 12 warns falsely on "x" + std::string).
std::string Cat(std::string_view prefix, int i) {
  std::string s(prefix);
  s.append(std::to_string(i));
  return s;
}

struct Seen {
  std::string key;
  uint64_t revision;
  Operation op;
  std::string value;
  bool operator==(const Seen&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Seen& s) {
  return os << "{" << s.key << " @" << s.revision << " " << OperationName(s.op) << " '" << s.value
            << "'}";
}

class watch_test : public ::testing::Test {
 protected:
  void SetUp() override {
    auto engine = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
  }

  std::shared_ptr<Bucket> Open(const std::string& name, int history) {
    auto b = engine_->OpenBucket(name, {.history = history});
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? *b : nullptr;
  }

  // Reads `n` entries, each within `timeout`; stops early on an error.
  static std::vector<Seen> Take(Watcher& w, size_t n, std::chrono::milliseconds timeout = 5s) {
    std::vector<Seen> out;
    while (out.size() < n) {
      auto e = w.Next(timeout);
      if (!e.ok()) {
        ADD_FAILURE() << "after " << out.size() << " entries: " << e.status().ToString();
        break;
      }
      out.push_back({e->key, e->revision, e->operation, e->value});
    }
    return out;
  }

  // Asserts that nothing more arrives within `quiet`.
  static void ExpectQuiet(Watcher& w, std::chrono::milliseconds quiet = 100ms) {
    auto e = w.Next(quiet);
    EXPECT_TRUE(e.status().IsTimeout())
        << (e.ok() ? "unexpected entry " + e->key + " @" + std::to_string(e->revision)
                   : e.status().ToString());
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(watch_test, LatestDeliversLatestEntryPerMatchingKeyThenChanges) {
  auto b = Open("w", 5);
  ASSERT_TRUE(b);
  ASSERT_EQ(*b->Put("a.1", "x1"), 1u);
  ASSERT_EQ(*b->Put("a.2", "y"), 2u);
  ASSERT_EQ(*b->Put("b.1", "other"), 3u);
  ASSERT_EQ(*b->Put("a.1", "x2"), 4u);
  ASSERT_EQ(*b->Delete("a.2"), 5u);
  ASSERT_EQ(*b->Put("a.3", "z"), 6u);
  ASSERT_EQ(*b->Purge("a.3"), 7u);
  ASSERT_EQ(*b->Put("a.4", "w"), 8u);
  ASSERT_EQ(*b->Put("a.4.deep", "no"), 9u);  // "a.*" is one token only

  auto w = b->Watch("a.*");  // kLatest is the default
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->last_revision(), 0u);
  const std::vector<Seen> initial = {
      {"a.1", 4, Operation::kPut, "x2"},
      {"a.2", 5, Operation::kDelete, ""},
      {"a.3", 7, Operation::kPurge, ""},
      {"a.4", 8, Operation::kPut, "w"},
  };
  EXPECT_EQ(Take(**w, initial.size()), initial);
  EXPECT_EQ((*w)->last_revision(), 8u);
  ExpectQuiet(**w);

  ASSERT_EQ(*b->Put("b.2", "other"), 10u);
  ASSERT_EQ(*b->Put("a.5", "new"), 11u);
  ASSERT_EQ(*b->Put("a.1", "x3"), 12u);
  ASSERT_EQ(*b->Delete("a.5"), 13u);
  const std::vector<Seen> later = {
      {"a.5", 11, Operation::kPut, "new"},
      {"a.1", 12, Operation::kPut, "x3"},
      {"a.5", 13, Operation::kDelete, ""},
  };
  EXPECT_EQ(Take(**w, later.size()), later);
  EXPECT_EQ((*w)->last_revision(), 13u);
  ExpectQuiet(**w);
}

TEST_F(watch_test, LatestOnEmptyBucketDeliversOnlyChanges) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  auto w = b->Watch(">", {.start = WatchStart::kLatest});
  ASSERT_TRUE(w.ok());
  ExpectQuiet(**w);
  ASSERT_TRUE(b->Put("k", "v").ok());
  EXPECT_EQ(Take(**w, 1), (std::vector<Seen>{{"k", 1, Operation::kPut, "v"}}));
}

TEST_F(watch_test, FromRevisionDeliversRetainedEntriesFromThereThenLive) {
  auto b = Open("w", 3);
  ASSERT_TRUE(b);
  ASSERT_EQ(*b->Put("k", "v1"), 1u);  // dropped by history 3 below
  ASSERT_EQ(*b->Put("o", "o1"), 2u);
  ASSERT_EQ(*b->Put("k", "v2"), 3u);
  ASSERT_EQ(*b->Put("k", "v3"), 4u);
  ASSERT_EQ(*b->Put("k", "v4"), 5u);
  ASSERT_EQ(*b->Delete("o"), 6u);

  auto from3 = b->Watch(">", {.start = WatchStart::kFromRevision, .from_revision = 3});
  ASSERT_TRUE(from3.ok()) << from3.status().ToString();
  const std::vector<Seen> expected3 = {
      {"k", 3, Operation::kPut, "v2"},
      {"k", 4, Operation::kPut, "v3"},
      {"k", 5, Operation::kPut, "v4"},
      {"o", 6, Operation::kDelete, ""},
  };
  EXPECT_EQ(Take(**from3, expected3.size()), expected3);
  ExpectQuiet(**from3);

  // From the start: revision 1 is no longer retained, 2.. are.
  for (uint64_t from : {0, 1}) {
    auto all = b->Watch(">", {.start = WatchStart::kFromRevision, .from_revision = from});
    ASSERT_TRUE(all.ok());
    std::vector<Seen> expected = {{"o", 2, Operation::kPut, "o1"}};
    expected.insert(expected.end(), expected3.begin(), expected3.end());
    EXPECT_EQ(Take(**all, expected.size()), expected) << "from " << from;
    ExpectQuiet(**all);
  }

  // A filter applies to the replay too.
  auto only_o = b->Watch("o", {.start = WatchStart::kFromRevision, .from_revision = 1});
  ASSERT_TRUE(only_o.ok());
  EXPECT_EQ(Take(**only_o, 2),
            (std::vector<Seen>{{"o", 2, Operation::kPut, "o1"}, {"o", 6, Operation::kDelete, ""}}));

  // Beyond the end: only what comes next.
  auto future = b->Watch(">", {.start = WatchStart::kFromRevision, .from_revision = 100});
  ASSERT_TRUE(future.ok());
  ExpectQuiet(**future);

  ASSERT_EQ(*b->Put("o", "o2"), 7u);
  const Seen live{"o", 7, Operation::kPut, "o2"};
  EXPECT_EQ(Take(**from3, 1), std::vector<Seen>{live});
  EXPECT_EQ(Take(**only_o, 1), std::vector<Seen>{live});
  ExpectQuiet(**future);  // 7 < 100: before its start
  for (int i = 8; i < 100; ++i) ASSERT_TRUE(b->Put("p", std::to_string(i)).ok());
  ExpectQuiet(**future, 50ms);
  ASSERT_EQ(*b->Put("o", "o100"), 100u);
  EXPECT_EQ(Take(**future, 1), (std::vector<Seen>{{"o", 100, Operation::kPut, "o100"}}));
}

TEST_F(watch_test, UpdatesOnlyDeliversOnlyLaterChanges) {
  auto b = Open("w", 5);
  ASSERT_TRUE(b);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(b->Put("k." + std::to_string(i), "old").ok());
  ASSERT_TRUE(b->Delete("k.3").ok());
  auto w = b->Watch("k.>", {.start = WatchStart::kUpdatesOnly});
  ASSERT_TRUE(w.ok());
  ExpectQuiet(**w);
  ASSERT_EQ(*b->Put("k.3", "new"), 12u);
  ASSERT_EQ(*b->Put("x", "not matching"), 13u);
  ASSERT_EQ(*b->Purge("k.4"), 14u);
  EXPECT_EQ(Take(**w, 2), (std::vector<Seen>{{"k.3", 12, Operation::kPut, "new"},
                                             {"k.4", 14, Operation::kPurge, ""}}));
  ExpectQuiet(**w);
}

// Writers on distinct keys: nothing is superseded, so every watcher must see
// every revision exactly once, in order, whether it keeps up (live feed) or
// keeps falling behind (max_pending 8: repeated overflow and catch-up).
TEST_F(watch_test, ConcurrentWritersEveryRevisionExactlyOnceInOrder) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 2500;
  constexpr uint64_t kTotal = kWriters * kPerWriter;

  struct Consumer {
    std::unique_ptr<Watcher> watcher;
    bool slow = false;
    std::vector<Seen> seen;
    std::string error;
  };
  // Consumer 0 keeps up; 1 pauses now and then with room for 8 entries; 2
  // has room for one, so it overflows, catches up from the log and rejoins
  // the live feed over and over while the writers run.
  const size_t max_pending[] = {4096, 8, 1};
  std::vector<Consumer> consumers(3);
  for (size_t c = 0; c < consumers.size(); ++c) {
    consumers[c].slow = c == 1;
    auto w = b->Watch(">", {.start = WatchStart::kLatest, .max_pending = max_pending[c]});
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    consumers[c].watcher = std::move(*w);
  }
  std::vector<std::thread> readers;
  for (auto& c : consumers) {
    readers.emplace_back([&c] {
      c.seen.reserve(kTotal);
      while (c.seen.size() < kTotal) {
        auto e = c.watcher->Next(10s);
        if (!e.ok()) {
          c.error = e.status().ToString();
          return;
        }
        c.seen.push_back({std::move(e->key), e->revision, e->operation, std::move(e->value)});
        if (c.slow && c.seen.size() % 64 == 0) std::this_thread::sleep_for(1ms);
      }
    });
  }
  std::atomic<int> write_errors{0};
  std::vector<std::thread> writers;
  std::mutex written_mu;
  std::map<uint64_t, std::string> written;  // revision -> key
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      std::vector<std::pair<uint64_t, std::string>> mine;
      for (int i = 0; i < kPerWriter; ++i) {
        std::string key = Cat("w", t) + Cat(".", i);
        auto r = b->Put(key, key);
        if (!r.ok()) {
          ++write_errors;
          continue;
        }
        mine.emplace_back(*r, std::move(key));
      }
      std::lock_guard<std::mutex> g(written_mu);
      for (auto& [rev, key] : mine) written.emplace(rev, std::move(key));
    });
  }
  for (auto& t : writers) t.join();
  for (auto& t : readers) t.join();

  ASSERT_EQ(write_errors.load(), 0);
  ASSERT_EQ(written.size(), kTotal);
  for (auto& c : consumers) {
    SCOPED_TRACE("consumer " + std::to_string(&c - consumers.data()));
    EXPECT_EQ(c.error, "");
    ASSERT_EQ(c.seen.size(), kTotal);
    for (size_t i = 0; i < c.seen.size(); ++i) {
      const Seen& s = c.seen[i];
      ASSERT_EQ(s.revision, i + 1) << "gap, duplicate or reordering at entry " << i;
      ASSERT_EQ(s.key, written[s.revision]) << "revision " << s.revision;
      ASSERT_EQ(s.value, s.key);
      ASSERT_EQ(s.op, Operation::kPut);
    }
    EXPECT_EQ(c.watcher->last_revision(), kTotal);
    ExpectQuiet(*c.watcher, 50ms);
  }
}

// kLatest started while writers run on distinct keys: the latest entry of
// every key is every revision so far, so the snapshot and the changes after
// it must join up with no gap and no overlap.
TEST_F(watch_test, LatestStartedDuringWritesJoinsSnapshotAndChangesExactly) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  constexpr int kWriters = 2;
  constexpr int kPerWriter = 3000;
  constexpr uint64_t kTotal = kWriters * kPerWriter;
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerWriter; ++i) {
        if (!b->Put(Cat("w", t) + Cat(".", i), "v").ok()) ADD_FAILURE();
      }
    });
  }
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (uint64_t at : {500u, 2500u, 4500u}) {
    WaitFor([&] { return b->LastRevision() >= at; }, 10s);
    auto w = b->Watch("w0.>");  // kLatest, filtered
    EXPECT_TRUE(w.ok());
    if (w.ok()) watchers.push_back(std::move(*w));
    auto all = b->Watch(">", {.start = WatchStart::kLatest});
    EXPECT_TRUE(all.ok());
    if (all.ok()) watchers.push_back(std::move(*all));
  }
  for (auto& t : writers) t.join();
  ASSERT_EQ(b->LastRevision(), kTotal);
  for (size_t i = 0; i < watchers.size(); ++i) {
    SCOPED_TRACE("watcher " + std::to_string(i));
    const bool filtered = i % 2 == 0;
    auto got = Take(*watchers[i], filtered ? kPerWriter : kTotal, 10s);
    ASSERT_EQ(got.size(), filtered ? kPerWriter : kTotal);
    std::set<std::string> keys;
    for (size_t j = 0; j < got.size(); ++j) {
      if (!filtered) {
        ASSERT_EQ(got[j].revision, j + 1);
      } else {
        ASSERT_EQ(got[j].key.rfind("w0.", 0), 0u) << got[j].key;
      }
      if (j > 0) {
        ASSERT_LT(got[j - 1].revision, got[j].revision);
      }
      keys.insert(got[j].key);
    }
    EXPECT_EQ(keys.size(), got.size()) << "a key was delivered twice";
    ExpectQuiet(*watchers[i], 20ms);
  }
}

TEST_F(watch_test, SlowConsumerNeverBlocksWritersAndStillGetsEverything) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  auto w = b->Watch(">", {.start = WatchStart::kUpdatesOnly, .max_pending = 16});
  ASSERT_TRUE(w.ok());
  // One entry first, then an empty read: the watch has drained the log and
  // is on the live feed when the burst starts, so the burst overflows it.
  ASSERT_EQ(*b->Put("first", "0"), 1u);
  ASSERT_EQ(Take(**w, 1).size(), 1u);
  ExpectQuiet(**w, 10ms);

  constexpr int kWrites = 2000;
  const auto start = Clock::now();
  std::thread writer([&] {
    for (int i = 0; i < kWrites; ++i) {
      auto r = b->Put("k." + std::to_string(i), std::to_string(i));
      if (!r.ok()) ADD_FAILURE() << r.status().ToString();
    }
  });
  writer.join();
  EXPECT_LT(MsSince(start), 5000) << "writers waited for the consumer";

  auto all = Take(**w, kWrites);
  ASSERT_EQ(all.size(), static_cast<size_t>(kWrites));
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_EQ(all[i].revision, static_cast<uint64_t>(i + 2)) << "entry " << i;
    ASSERT_EQ(all[i].key, "k." + std::to_string(i));
    ASSERT_EQ(all[i].value, std::to_string(i));
  }
  ExpectQuiet(**w);
  // And it is live again afterwards.
  ASSERT_EQ(*b->Put("after", "x"), static_cast<uint64_t>(kWrites + 2));
  EXPECT_EQ(Take(**w, 1), (std::vector<Seen>{{"after", kWrites + 2, Operation::kPut, "x"}}));
}

// With history 1 and one key rewritten, a lagging consumer may miss
// superseded revisions, but what it gets is in order, without duplicates,
// and ends at the latest.
TEST_F(watch_test, LaggingConsumerOnRewrittenKeySkipsOnlySupersededRevisions) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  auto w = b->Watch(">", {.start = WatchStart::kUpdatesOnly, .max_pending = 4});
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(*b->Put("k", "0"), 1u);
  ASSERT_EQ(Take(**w, 1).size(), 1u);
  ExpectQuiet(**w, 10ms);  // now live
  for (int i = 1; i <= 100; ++i) ASSERT_TRUE(b->Put("k", std::to_string(i)).ok());
  std::vector<Seen> got;
  while (true) {
    auto e = (*w)->Next(200ms);
    if (!e.ok()) {
      EXPECT_TRUE(e.status().IsTimeout()) << e.status().ToString();
      break;
    }
    got.push_back({e->key, e->revision, e->operation, e->value});
  }
  ASSERT_FALSE(got.empty());
  EXPECT_LE(got.size(), 100u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].value, std::to_string(got[i].revision - 1)) << "value of revision";
    if (i > 0) {
      EXPECT_LT(got[i - 1].revision, got[i].revision);
    }
  }
  EXPECT_EQ(got.back().revision, 101u);
  EXPECT_EQ(got.back().value, "100");
}

TEST_F(watch_test, NextTimesOutWhenIdleAndCancelUnblocksIt) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  auto w = b->Watch(">");
  ASSERT_TRUE(w.ok());
  auto start = Clock::now();
  auto idle = (*w)->Next(150ms);
  EXPECT_TRUE(idle.status().IsTimeout()) << idle.status().ToString();
  EXPECT_GE(MsSince(start), 150);
  EXPECT_LT(MsSince(start), 5000);

  std::atomic<bool> started{false};
  Status blocked_status;
  Clock::time_point returned;
  std::thread reader([&] {
    started = true;
    auto e = (*w)->Next(10s);
    blocked_status = e.status();
    returned = Clock::now();
  });
  EXPECT_TRUE(WaitFor([&] { return started.load(); }, 2s));
  std::this_thread::sleep_for(100ms);  // let it block
  const auto cancelled = Clock::now();
  (*w)->Cancel();
  reader.join();
  EXPECT_TRUE(blocked_status.IsUnavailable()) << blocked_status.ToString();
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(returned - cancelled).count(),
            500);

  // Cancelled for good, even with new writes; Cancel is idempotent.
  ASSERT_TRUE(b->Put("k", "v").ok());
  EXPECT_TRUE((*w)->Next(0ms).status().IsUnavailable());
  (*w)->Cancel();
  EXPECT_TRUE((*w)->Next(50ms).status().IsUnavailable());
}

TEST_F(watch_test, CallbackGetsEntriesInOrderAndNothingAfterCancel) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  ASSERT_EQ(*b->Put("pre", "existing"), 1u);
  std::mutex mu;
  std::vector<Seen> got;
  std::atomic<int> calls{0}, errors{0};
  std::set<std::thread::id> threads;
  auto w = b->Watch("k.>", {.start = WatchStart::kLatest}, [&](const Result<Entry>& e) {
    ++calls;
    if (!e.ok()) {
      ++errors;
      return;
    }
    std::lock_guard<std::mutex> g(mu);
    got.push_back({e->key, e->revision, e->operation, e->value});
    threads.insert(std::this_thread::get_id());
  });
  ASSERT_TRUE(w.ok()) << w.status().ToString();

  std::vector<uint64_t> revisions;
  for (int i = 0; i < 100; ++i) {
    auto r = b->Put("k." + std::to_string(i), std::to_string(i));
    ASSERT_TRUE(r.ok());
    revisions.push_back(*r);
    if (i % 10 == 0) {
      ASSERT_TRUE(b->Put("other", "x").ok());
    }
  }
  ASSERT_TRUE(WaitFor([&] { return calls.load() >= 100; }, 10s)) << calls.load() << " calls";
  {
    std::lock_guard<std::mutex> g(mu);
    ASSERT_EQ(got.size(), 100u);
    for (int i = 0; i < 100; ++i) {
      EXPECT_EQ(got[i].revision, revisions[i]);
      EXPECT_EQ(got[i].key, "k." + std::to_string(i));
    }
    EXPECT_EQ(threads.size(), 1u);
    EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u);
  }
  EXPECT_EQ((*w)->last_revision(), revisions.back());

  (*w)->Cancel();
  const int after_cancel = calls.load();
  for (int i = 100; i < 150; ++i) ASSERT_TRUE(b->Put("k." + std::to_string(i), "late").ok());
  std::this_thread::sleep_for(300ms);  // time for a (wrong) delivery to show
  EXPECT_EQ(calls.load(), after_cancel);
  EXPECT_EQ(after_cancel, 100);
  EXPECT_EQ(errors.load(), 0);
}

// Cancel() waits for a callback in progress: once it returns, no callback
// is running or will run.
TEST_F(watch_test, CancelWaitsForRunningCallback) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  std::atomic<bool> in_callback{false};
  std::atomic<int> calls{0};
  auto w = b->Watch(">", {.start = WatchStart::kUpdatesOnly}, [&](const Result<Entry>&) {
    in_callback = true;
    std::this_thread::sleep_for(20ms);
    ++calls;
    in_callback = false;
  });
  ASSERT_TRUE(w.ok());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(b->Put(Cat("k", i), "v").ok());
  ASSERT_TRUE(WaitFor([&] { return calls.load() >= 2; }, 5s));
  (*w)->Cancel();
  EXPECT_FALSE(in_callback.load()) << "a callback still ran after Cancel() returned";
  const int at_cancel = calls.load();
  EXPECT_LT(at_cancel, 50);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(calls.load(), at_cancel);
  EXPECT_FALSE(in_callback.load());
}

// After Cancel(), last_revision() is the last entry the callback got, not
// one the watch took from its queue and then dropped because of the Cancel().
// (A consumer that resumes from last_revision() + 1 would otherwise skip it.)
// The window is a few instructions wide, so many watches are cancelled while
// a writer keeps their queues full.
TEST_F(watch_test, LastRevisionAfterCancelIsTheLastEntryTheCallbackGot) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  std::atomic<bool> stop{false};
  // Bursts, with pauses that let Watch() and Cancel() take the bucket's
  // write lock (an unfair mutex under TSan would starve them otherwise).
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      ASSERT_TRUE(b->Put(Cat("k", i % 10), "v").ok());
      if (i % 20 == 19) std::this_thread::sleep_for(200us);
    }
  });
  int mismatches = 0, with_backlog = 0;
  for (int round = 0; round < 300; ++round) {
    std::atomic<uint64_t> last_seen{0};
    auto w = b->Watch(">", {.start = WatchStart::kUpdatesOnly},
                      [&](const Result<Entry>& e) {
                        if (e.ok()) last_seen = e->revision;
                      });
    ASSERT_TRUE(w.ok());
    std::this_thread::sleep_for(std::chrono::microseconds(200 + 37 * (round % 20)));
    (*w)->Cancel();
    if (b->LastRevision() > last_seen.load()) ++with_backlog;
    if ((*w)->last_revision() != last_seen.load()) {
      ++mismatches;
      ADD_FAILURE() << "round " << round << ": last_revision() " << (*w)->last_revision()
                    << " but the callback last got " << last_seen.load();
    }
  }
  stop = true;
  writer.join();
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(with_backlog, 0) << "no Cancel() found entries still to deliver";
}

// Destroying a callback watch stops it as Cancel does; so does cancelling it
// from its own callback.
TEST_F(watch_test, DestroyOrCancelFromCallbackStopsCallbacks) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  std::atomic<int> calls{0};
  {
    auto w =
        b->Watch(">", {.start = WatchStart::kUpdatesOnly}, [&](const Result<Entry>&) { ++calls; });
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(b->Put("k", "1").ok());
    ASSERT_TRUE(WaitFor([&] { return calls.load() == 1; }, 5s));
  }
  ASSERT_TRUE(b->Put("k", "2").ok());
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(calls.load(), 1);

  std::atomic<int> self_calls{0};
  Watcher* self = nullptr;
  std::atomic<bool> ready{false};
  auto w = b->Watch(">", {.start = WatchStart::kUpdatesOnly}, [&](const Result<Entry>&) {
    ++self_calls;
    while (!ready.load()) std::this_thread::yield();
    self->Cancel();
  });
  ASSERT_TRUE(w.ok());
  self = w->get();
  ready = true;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(b->Put("k", std::to_string(i)).ok());
  ASSERT_TRUE(WaitFor([&] { return self_calls.load() >= 1; }, 5s));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(self_calls.load(), 1);
  EXPECT_TRUE((*w)->Next(0ms).status().IsUnavailable());
}

// A callback may destroy its own watch: the watch's thread must not touch
// the destroyed object afterwards (run under AddressSanitizer to see it).
TEST_F(watch_test, CallbackMayDestroyItsOwnWatch) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  std::mutex mu;
  std::condition_variable cv;
  std::unique_ptr<Watcher> holder;
  int calls = 0;
  bool destroyed = false;
  auto w = b->Watch(">", {.start = WatchStart::kUpdatesOnly}, [&](const Result<Entry>&) {
    std::unique_lock<std::mutex> g(mu);
    ++calls;
    cv.wait(g, [&] { return holder != nullptr; });
    std::unique_ptr<Watcher> mine = std::move(holder);
    g.unlock();
    mine.reset();  // destroys the watch from its own callback
    g.lock();
    destroyed = true;
    cv.notify_all();
  });
  ASSERT_TRUE(w.ok());
  {
    std::lock_guard<std::mutex> g(mu);
    holder = std::move(*w);
  }
  cv.notify_all();
  ASSERT_TRUE(b->Put("k", "1").ok());
  ASSERT_TRUE(b->Put("k", "2").ok());
  {
    std::unique_lock<std::mutex> g(mu);
    ASSERT_TRUE(cv.wait_for(g, 5s, [&] { return destroyed; }));
  }
  // Writes after the watch destroyed itself reach no callback.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(b->Put("k", "later").ok());
  std::this_thread::sleep_for(200ms);
  std::lock_guard<std::mutex> g(mu);
  EXPECT_EQ(calls, 1);
}

TEST_F(watch_test, BadFilterOrOptionsAreInvalidArgument) {
  auto b = Open("w", 1);
  ASSERT_TRUE(b);
  for (const char* f : {"a..b", "a.>.b", ">.a", ".a", "a b", "a\tb"}) {
    EXPECT_TRUE(b->Watch(f).status().IsInvalidArgument()) << f;
    EXPECT_TRUE(b->Watch(f, {}, [](const Result<Entry>&) {}).status().IsInvalidArgument()) << f;
  }
  // Filters take every key a replica can hold: a token with '*' among other
  // characters is literal, and non-ASCII keys are watched like any other.
  for (const char* f : {"a*", "caf\xc3\xa9.>"}) EXPECT_TRUE(b->Watch(f).ok()) << f;
  EXPECT_TRUE(b->Watch(">", {.max_pending = 0}).status().IsInvalidArgument());
  EXPECT_TRUE(b->Watch(">", {}, WatchCallback()).status().IsInvalidArgument());
  // An empty filter means every key.
  auto all = b->Watch("", {.start = WatchStart::kUpdatesOnly});
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_TRUE(b->Put("x.y.z", "v").ok());
  EXPECT_EQ(Take(**all, 1).size(), 1u);
}

}  // namespace
}  // namespace revkv
