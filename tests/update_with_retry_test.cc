// UpdateWithRetry: Create for absent or tombstoned keys (never a blind Put),
// Update(revision) otherwise, retries with backoff on conflicts within
// max_attempts and deadline, declining mutations, local per-key
// serialization, fencing and bad input.
//
// Conflicts are forced deterministically by a mutate function that writes
// the same key itself (a competing writer): UpdateWithRetry holds only a
// per-key gate of its own, not the bucket's write lock, so that is allowed.
//
// Suite names are lower-case so that `ctest -R update_with_retry` selects them.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
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

// The key's value, or "<status>" when it has none.
std::string ValueOf(Bucket& bucket, std::string_view key) {
  auto r = bucket.Get(key);
  if (r.ok()) return *r;
  std::string out("<");
  out.append(r.status().ToString());
  out.push_back('>');
  return out;
}

int64_t AsInt(const std::optional<std::string>& v) { return v ? std::stoll(*v) : 0; }

class update_with_retry_test : public ::testing::Test {
 protected:
  void SetUp() override {
    auto engine = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    auto b = engine_->OpenBucket("counters", {.history = 5});
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    b_ = *b;
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
  std::shared_ptr<Bucket> b_;
};

TEST_F(update_with_retry_test, CreatesAbsentKeyAndRetriesWhenAnotherWriterCreatesItFirst) {
  int calls = 0;
  std::vector<std::optional<std::string>> inputs;
  Result<uint64_t> competing = Status::Busy("not run");
  auto out = b_->UpdateWithRetry(
      "ctr", [&](const std::optional<std::string>& cur) -> std::optional<std::string> {
        inputs.push_back(cur);
        if (++calls == 1) competing = b_->Create("ctr", "10");  // between our read and write
        return std::to_string(AsInt(cur) + 1);
      });
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_TRUE(competing.ok()) << competing.status().ToString();
  EXPECT_EQ(out->attempts, 2) << "a blind write would not have conflicted";
  EXPECT_TRUE(out->written);
  EXPECT_EQ(calls, 2);
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_EQ(inputs[0], std::nullopt);
  EXPECT_EQ(inputs[1], std::optional<std::string>("10"));
  EXPECT_EQ(ValueOf(*b_, "ctr"), "11");
  EXPECT_GT(out->revision, *competing);
  EXPECT_EQ(out->revision, b_->LastRevision());
  // Both writes are in the history: nothing was overwritten blindly.
  auto history = b_->History("ctr");
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].value, "10");
  EXPECT_EQ((*history)[1].value, "11");
}

TEST_F(update_with_retry_test, UncontendedUpdatesTakeOneAttempt) {
  auto created = b_->UpdateWithRetry("n", [](const std::optional<std::string>& cur) {
    return std::optional<std::string>(std::to_string(AsInt(cur) + 1));
  });
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(created->attempts, 1);
  EXPECT_TRUE(created->written);
  EXPECT_EQ(ValueOf(*b_, "n"), "1");
  auto updated = b_->UpdateWithRetry("n", [](const std::optional<std::string>& cur) {
    return std::optional<std::string>(std::to_string(AsInt(cur) + 1));
  });
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ(updated->attempts, 1);
  EXPECT_EQ(updated->revision, created->revision + 1);
  EXPECT_EQ(ValueOf(*b_, "n"), "2");
}

TEST_F(update_with_retry_test, AfterTombstoneItCreatesWithCasOnTheTombstone) {
  ASSERT_TRUE(b_->Put("k", "5").ok());
  auto tomb = b_->Delete("k");
  ASSERT_TRUE(tomb.ok());

  int calls = 0;
  std::vector<std::optional<std::string>> inputs;
  auto out = b_->UpdateWithRetry(
      "k", [&](const std::optional<std::string>& cur) -> std::optional<std::string> {
        inputs.push_back(cur);
        if (++calls == 1) {
          EXPECT_TRUE(b_->Put("k", "7").ok());  // revives the key meanwhile
        }
        return std::to_string(AsInt(cur) + 1);
      });
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->attempts, 2);
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_EQ(inputs[0], std::nullopt) << "a tombstone reads as absent";
  EXPECT_EQ(inputs[1], std::optional<std::string>("7"));
  EXPECT_EQ(ValueOf(*b_, "k"), "8");

  // Purged keys too.
  ASSERT_TRUE(b_->Purge("k").ok());
  auto again = b_->UpdateWithRetry("k", [](const std::optional<std::string>& cur) {
    return std::optional<std::string>(cur ? "had value" : "fresh");
  });
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->attempts, 1);
  EXPECT_EQ(ValueOf(*b_, "k"), "fresh");
}

TEST_F(update_with_retry_test, GivesUpWithConflictAfterExactlyMaxAttempts) {
  ASSERT_TRUE(b_->Put("hot", "0").ok());
  int calls = 0;
  std::string last_competing;
  auto out = b_->UpdateWithRetry(
      "hot",
      [&](const std::optional<std::string>&) -> std::optional<std::string> {
        ++calls;
        last_competing = "other-" + std::to_string(calls);
        EXPECT_TRUE(b_->Put("hot", last_competing).ok());  // always a step ahead
        return "mine";
      },
      {.max_attempts = 5});
  ASSERT_FALSE(out.ok());
  EXPECT_TRUE(out.status().IsConflict()) << out.status().ToString();
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(out.status().revision(), b_->LastRevision()) << "names the current revision";
  EXPECT_EQ(ValueOf(*b_, "hot"), last_competing) << "nothing of ours was written";

  // max_attempts 1: a single try.
  calls = 0;
  auto once =
      b_->UpdateWithRetry("hot",
                          [&](const std::optional<std::string>&) -> std::optional<std::string> {
                            ++calls;
                            EXPECT_TRUE(b_->Put("hot", "x").ok());
                            return "mine";
                          },
                          {.max_attempts = 1});
  EXPECT_TRUE(once.status().IsConflict());
  EXPECT_EQ(calls, 1);
}

TEST_F(update_with_retry_test, GivesUpWithConflictWhenTheDeadlinePasses) {
  ASSERT_TRUE(b_->Put("hot", "0").ok());
  int calls = 0;
  const auto start = Clock::now();
  auto out = b_->UpdateWithRetry(
      "hot",
      [&](const std::optional<std::string>&) -> std::optional<std::string> {
        ++calls;
        EXPECT_TRUE(b_->Put("hot", std::to_string(calls)).ok());
        return "mine";
      },
      // Far more attempts than fit in the deadline (backoff reaches 20 ms),
      // yet bounded, so that a deadline that is ignored fails rather than hangs.
      {.max_attempts = 1000, .deadline = 50ms});
  const int64_t took = MsSince(start);
  ASSERT_FALSE(out.ok());
  EXPECT_TRUE(out.status().IsConflict()) << out.status().ToString();
  EXPECT_GE(took, 50);
  EXPECT_LT(took, 2000);
  EXPECT_GT(calls, 1);
  EXPECT_LT(calls, 1000);
  EXPECT_EQ(ValueOf(*b_, "hot"), std::to_string(calls));
}

TEST_F(update_with_retry_test, RetriesBackOffWithinTheConfiguredBounds) {
  ASSERT_TRUE(b_->Put("hot", "0").ok());
  auto always_conflict = [&](int* calls) {
    return [this, calls](const std::optional<std::string>&) -> std::optional<std::string> {
      ++*calls;
      EXPECT_TRUE(b_->Put("hot", "x").ok());
      return "mine";
    };
  };
  // 20 waits, each uniform in [0, 4 ms]: about 40 ms in all, and far more
  // than 8 ms except with negligible probability.
  int calls = 0;
  auto start = Clock::now();
  auto out = b_->UpdateWithRetry("hot", always_conflict(&calls),
                                 {.max_attempts = 21, .initial_backoff = 4ms, .max_backoff = 4ms});
  EXPECT_TRUE(out.status().IsConflict());
  EXPECT_EQ(calls, 21);
  EXPECT_GE(MsSince(start), 8) << "no backoff between attempts";

  // The backoff doubles but stops at max_backoff: 40 waits of at most 2 ms.
  calls = 0;
  start = Clock::now();
  out = b_->UpdateWithRetry("hot", always_conflict(&calls),
                            {.max_attempts = 41, .initial_backoff = 1ms, .max_backoff = 2ms});
  EXPECT_TRUE(out.status().IsConflict());
  EXPECT_EQ(calls, 41);
  EXPECT_LT(MsSince(start), 3000) << "backoff grew past max_backoff";
}

TEST_F(update_with_retry_test, DecliningMutateWritesNothing) {
  auto put = b_->Put("k", "v");
  ASSERT_TRUE(put.ok());
  const uint64_t last = b_->LastRevision();
  auto decline = [](const std::optional<std::string>&) -> std::optional<std::string> {
    return std::nullopt;
  };

  auto live = b_->UpdateWithRetry("k", decline);
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  EXPECT_FALSE(live->written);
  EXPECT_EQ(live->attempts, 1);
  EXPECT_EQ(live->revision, *put) << "the revision read";

  auto absent = b_->UpdateWithRetry("absent", decline);
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->written);
  EXPECT_EQ(absent->revision, 0u);
  EXPECT_TRUE(b_->GetEntry("absent").status().IsNotFound());
  EXPECT_TRUE(b_->History("absent").status().IsNotFound()) << "not even a tombstone";

  EXPECT_EQ(b_->LastRevision(), last);
  EXPECT_EQ(ValueOf(*b_, "k"), "v");

  auto tomb = b_->Delete("k");
  ASSERT_TRUE(tomb.ok());
  auto on_tomb = b_->UpdateWithRetry("k", decline);
  ASSERT_TRUE(on_tomb.ok());
  EXPECT_FALSE(on_tomb->written);
  EXPECT_EQ(on_tomb->revision, *tomb) << "the tombstone's revision";
  EXPECT_EQ(b_->LastRevision(), *tomb);
}

TEST_F(update_with_retry_test, ManyThreadsOnOneKeyLoseNoUpdateAndNeverConflict) {
  constexpr int kThreads = 8;
  constexpr int kIncrements = 200;
  std::atomic<int> failures{0}, extra_attempts{0}, not_written{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        auto out = b_->UpdateWithRetry("counter", [](const std::optional<std::string>& cur) {
          return std::optional<std::string>(std::to_string(AsInt(cur) + 1));
        });
        if (!out.ok()) {
          ++failures;
          continue;
        }
        extra_attempts += out->attempts - 1;
        if (!out->written) ++not_written;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(not_written.load(), 0);
  EXPECT_EQ(extra_attempts.load(), 0) << "threads of one process conflicted with each other";
  EXPECT_EQ(ValueOf(*b_, "counter"), std::to_string(kThreads * kIncrements));
  EXPECT_EQ(b_->LastRevision(), static_cast<uint64_t>(kThreads * kIncrements));
}

// Against a real competing writer (raw compare-and-swap increments from
// another thread), retries keep every increment.
TEST_F(update_with_retry_test, RetriesLoseNoUpdateAgainstRawCasWriter) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 150;
  constexpr int kRaw = 300;
  std::atomic<int> failures{0};
  std::thread raw([&] {
    for (int i = 0; i < kRaw; ++i) {
      while (true) {
        auto e = b_->GetEntry("counter");
        Result<uint64_t> w =
            e.ok() ? b_->Update("counter", std::to_string(std::stoll(e->value) + 1), e->revision)
                   : b_->Create("counter", "1");
        if (w.ok()) break;
        if (!w.status().IsConflict() && !w.status().IsExists()) {
          ++failures;
          return;
        }
      }
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        auto out =
            b_->UpdateWithRetry("counter",
                                [](const std::optional<std::string>& cur) {
                                  return std::optional<std::string>(std::to_string(AsInt(cur) + 1));
                                },
                                {.max_attempts = 1'000'000});
        if (!out.ok() || !out->written) ++failures;
      }
    });
  }
  raw.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(ValueOf(*b_, "counter"), std::to_string(kThreads * kIncrements + kRaw));
}

// Same-key calls queue behind each other locally; other keys do not wait.
TEST_F(update_with_retry_test, SameKeyCallsAreSerializedOtherKeysAreNot) {
  std::mutex mu;
  std::condition_variable cv;
  bool first_inside = false, let_first_finish = false;
  std::atomic<bool> second_called{false}, other_done{false};

  std::thread first([&] {
    auto out = b_->UpdateWithRetry("k", [&](const std::optional<std::string>&) {
      std::unique_lock<std::mutex> g(mu);
      first_inside = true;
      cv.notify_all();
      cv.wait_for(g, 10s, [&] { return let_first_finish; });
      return std::optional<std::string>("first");
    });
    EXPECT_TRUE(out.ok() && out->attempts == 1);
  });
  {
    std::unique_lock<std::mutex> g(mu);
    EXPECT_TRUE(cv.wait_for(g, 5s, [&] { return first_inside; }));
  }
  std::thread second([&] {
    auto out = b_->UpdateWithRetry("k", [&](const std::optional<std::string>& cur) {
      second_called = true;
      EXPECT_EQ(cur, std::optional<std::string>("first")) << "ran before the first finished";
      return std::optional<std::string>("second");
    });
    EXPECT_TRUE(out.ok() && out->attempts == 1);
  });
  std::thread other([&] {
    auto out = b_->UpdateWithRetry(
        "other", [](const std::optional<std::string>&) { return std::optional<std::string>("x"); });
    EXPECT_TRUE(out.ok());
    other_done = true;
  });
  other.join();
  EXPECT_TRUE(other_done.load()) << "a different key waited";
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(second_called.load()) << "same-key update ran concurrently";
  {
    std::lock_guard<std::mutex> g(mu);
    let_first_finish = true;
  }
  cv.notify_all();
  first.join();
  second.join();
  EXPECT_TRUE(second_called.load());
  EXPECT_EQ(ValueOf(*b_, "k"), "second");
}

TEST_F(update_with_retry_test, BadArgumentsAreInvalidArgument) {
  int calls = 0;
  Mutator m = [&](const std::optional<std::string>&) -> std::optional<std::string> {
    ++calls;
    return "v";
  };
  for (int bad : {0, -1}) {
    auto out = b_->UpdateWithRetry("k", m, {.max_attempts = bad});
    EXPECT_TRUE(out.status().IsInvalidArgument()) << bad << ": " << out.status().ToString();
  }
  for (const char* key : {"", "a..b", ".a", "a b", "a*"}) {
    EXPECT_TRUE(b_->UpdateWithRetry(key, m).status().IsInvalidArgument()) << "'" << key << "'";
  }
  EXPECT_TRUE(b_->UpdateWithRetry("k", Mutator()).status().IsInvalidArgument());
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(b_->LastRevision(), 0u);

  // A value over the bucket's limit is refused, never truncated.
  auto small = engine_->OpenBucket("small", {.max_value_size = 4});
  ASSERT_TRUE(small.ok());
  auto big = (*small)->UpdateWithRetry(
      "k", [](const std::optional<std::string>&) { return std::optional<std::string>("12345"); });
  EXPECT_TRUE(big.status().IsInvalidArgument()) << big.status().ToString();
  EXPECT_TRUE((*small)->GetEntry("k").status().IsNotFound());
}

TEST_F(update_with_retry_test, FencedUpdatesNeedTheCurrentToken) {
  auto lock = engine_->Acquire("owner", 2s, 1s);
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  const uint64_t token = (*lock)->fencing_token();
  auto inc = [](const std::optional<std::string>& cur) {
    return std::optional<std::string>(std::to_string(AsInt(cur) + 1));
  };
  const WriteOptions fenced{.fence = Fence{"owner", token}};
  auto ok = b_->UpdateWithRetry("c", inc, {}, fenced);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ok = b_->UpdateWithRetry("c", inc, {}, fenced);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ValueOf(*b_, "c"), "2");

  ASSERT_TRUE((*lock)->Release().ok());
  auto next = engine_->Acquire("owner", 2s, 1s);
  ASSERT_TRUE(next.ok());
  const uint64_t last = b_->LastRevision();
  auto stale = b_->UpdateWithRetry("c", inc, {}, fenced);
  EXPECT_TRUE(stale.status().IsLockLost()) << stale.status().ToString();
  auto stale_create = b_->UpdateWithRetry("absent", inc, {}, fenced);
  EXPECT_TRUE(stale_create.status().IsLockLost()) << stale_create.status().ToString();
  EXPECT_EQ(b_->LastRevision(), last);
  EXPECT_EQ(ValueOf(*b_, "c"), "2");

  auto fresh =
      b_->UpdateWithRetry("c", inc, {}, {.fence = Fence{"owner", (*next)->fencing_token()}});
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_EQ(ValueOf(*b_, "c"), "3");
}

// The free-function spelling forwards to the method.
TEST_F(update_with_retry_test, FreeFunctionForwards) {
  auto out = UpdateWithRetry(
      *b_, "f", [](const std::optional<std::string>&) { return std::optional<std::string>("v"); });
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(ValueOf(*b_, "f"), "v");
}

}  // namespace
}  // namespace revkv
