// Lease locks: mutual exclusion, fencing tokens, Busy/Timeout, wake-up by
// notification, FIFO hand-off, expiry and takeover, loss callbacks, auto
// renewal, fenced writes, locks that outlive a killed process, bad input.
//
// Suite names are lower-case so that `ctest -R lock` selects them.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "revkv/revkv.h"
#include "tests/test_util.h"

extern char** environ;

namespace revkv {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::TempDir;

using testing::MsSince;
int64_t MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

// Polls `pred` until it holds or `timeout` passes; returns its last value.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// The key's value, or "<status>" when it has none.
std::string ValueOf(Bucket& bucket, std::string_view key) {
  auto r = bucket.Get(key);
  if (r.ok()) return *r;
  std::string out("<");
  out.append(r.status().ToString());
  out.push_back('>');
  return out;
}

// Records the calls of an on_lost callback.
struct LostRecorder {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  Code code = Code::kOk;
  std::thread::id thread;
  Clock::time_point when;

  std::function<void(const Status&)> Callback() {
    return [this](const Status& s) {
      std::lock_guard<std::mutex> lock(mu);
      ++calls;
      code = s.code();
      thread = std::this_thread::get_id();
      when = Clock::now();
      cv.notify_all();
    };
  }
  bool WaitForCall(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return calls > 0; });
  }
  int Calls() {
    std::lock_guard<std::mutex> lock(mu);
    return calls;
  }
};

// Blocks the engine's lock thread inside an on_lost callback until Release()
// (or destruction), to simulate a lock thread that is paused.
class LockThreadStall {
 public:
  // Lets the lock thread go and waits until it has left the callback, which
  // uses this object.
  ~LockThreadStall() {
    std::unique_lock<std::mutex> g(mu_);
    released_ = true;
    cv_.notify_all();
    cv_.wait_for(g, std::chrono::seconds(30), [&] { return inside_ == 0; });
  }

  // Takes a short unrenewed lock whose loss callback, run by the lock
  // thread, blocks it. Retries if the loss was found on this thread instead
  // (the callback was registered too late). Returns the handle, or null.
  std::unique_ptr<Lock> Start(Engine& engine) {
    for (int i = 0; i < 5; ++i) {
      auto lock = engine.Acquire("staller." + std::to_string(i), std::chrono::milliseconds(100),
                                 std::chrono::seconds(1), {.auto_renew = false});
      if (!lock.ok()) return nullptr;
      const auto me = std::this_thread::get_id();
      (*lock)->on_lost([this, me](const Status&) {
        if (std::this_thread::get_id() == me) return;  // not the lock thread
        std::unique_lock<std::mutex> g(mu_);
        entered_ = true;
        ++inside_;
        cv_.notify_all();
        cv_.wait_for(g, std::chrono::seconds(20), [&] { return released_; });
        --inside_;
        cv_.notify_all();
      });
      std::unique_lock<std::mutex> g(mu_);
      if (cv_.wait_for(g, std::chrono::seconds(5), [&] { return entered_; }))
        return std::move(*lock);
    }
    return nullptr;
  }
  void Release() {
    std::lock_guard<std::mutex> g(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool released_ = false;
  int inside_ = 0;
};

class lock_test : public ::testing::Test {
 protected:
  void SetUp() override {
    auto engine = Engine::Open({.path = dir_.path()});
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    auto data = engine_->OpenBucket("data");
    ASSERT_TRUE(data.ok()) << data.status().ToString();
    data_ = *data;
  }

  // TryAcquire from a thread of its own (a third party), returning its code.
  Code TryFromOtherThread(const std::string& name, std::chrono::milliseconds lease) {
    Code code = Code::kOk;
    std::thread t([&] {
      auto r = engine_->TryAcquire(name, lease);
      code = r.status().code();
    });
    t.join();
    return code;
  }

  static WriteOptions Fenced(const std::string& lock, uint64_t token) {
    return WriteOptions{.fence = Fence{lock, token}};
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
  std::shared_ptr<Bucket> data_;
};

TEST_F(lock_test, ManyThreadsAreMutuallyExclusiveWithStrictlyIncreasingTokens) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 50;
  long counter = 0;  // deliberately plain: only the lock protects it
  std::atomic<bool> inside{false};
  std::atomic<int> overlaps{0}, failed{0}, null_handles{0}, bad_releases{0}, bad_fenced{0};
  std::mutex tokens_mu;
  std::vector<uint64_t> tokens;  // in the order the critical sections ran

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        auto lock = engine_->Acquire("mutex", 400ms, 20s);
        if (!lock.ok()) {
          ++failed;
          ADD_FAILURE() << lock.status().ToString();
          continue;
        }
        if (*lock == nullptr) {
          ++null_handles;
          continue;
        }
        if (inside.exchange(true)) ++overlaps;
        const long seen = counter;
        std::this_thread::yield();
        counter = seen + 1;
        // The token is the lock's current one: a fenced write commits.
        if (!data_
                 ->Put("guarded", std::to_string(seen + 1),
                       Fenced("mutex", (*lock)->fencing_token()))
                 .ok()) {
          ++bad_fenced;
        }
        {
          std::lock_guard<std::mutex> g(tokens_mu);
          tokens.push_back((*lock)->fencing_token());
        }
        inside.store(false);
        if (!(*lock)->Release().ok()) ++bad_releases;
      }
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(null_handles.load(), 0);
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(bad_releases.load(), 0);
  EXPECT_EQ(bad_fenced.load(), 0);
  EXPECT_EQ(counter, kThreads * kRounds);
  EXPECT_EQ(ValueOf(*data_, "guarded"), std::to_string(kThreads * kRounds));
  ASSERT_EQ(tokens.size(), static_cast<size_t>(kThreads * kRounds));
  for (size_t i = 1; i < tokens.size(); ++i) {
    ASSERT_LT(tokens[i - 1], tokens[i]) << "acquisition " << i;
  }
}

// Waiters that give up (short timeouts, TryAcquire) while the lock is being
// handed from holder to holder: exclusion holds, nobody hangs, and the lock
// is free at the end.
TEST_F(lock_test, ExclusionHoldsWhileWaitersTimeOutDuringHandOffs) {
  constexpr int kThreads = 6;
  constexpr int kRounds = 150;
  std::atomic<bool> inside{false};
  std::atomic<int> overlaps{0}, acquired{0}, timeouts{0}, busy{0}, errors{0};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const int pick = (t * 7 + i) % 5;
        auto lock = pick == 0 ? engine_->TryAcquire("hot", 300ms)
                              : engine_->Acquire("hot", 300ms, std::chrono::milliseconds(pick - 1));
        if (lock.status().IsTimeout()) {
          ++timeouts;
          continue;
        }
        if (lock.status().IsBusy()) {
          ++busy;
          continue;
        }
        if (!lock.ok() || *lock == nullptr) {
          ++errors;
          continue;
        }
        ++acquired;
        if (inside.exchange(true)) ++overlaps;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        inside.store(false);
        if (!(*lock)->Release().ok()) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(acquired.load(), 0);
  EXPECT_EQ(acquired + timeouts + busy, kThreads * kRounds);
  EXPECT_LT(MsSince(start), 15000);
  EXPECT_EQ(TryFromOtherThread("hot", 300ms), Code::kOk) << "the lock was left held";
}

TEST_F(lock_test, TryAcquireIsBusyAndAcquireTimesOutWhileHeld) {
  auto held = engine_->Acquire("busy", 2s, 1s);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  ASSERT_NE(*held, nullptr);
  EXPECT_EQ((*held)->name(), "busy");

  // The holder's own thread and another thread both get Busy, at once.
  auto start = Clock::now();
  auto same_thread = engine_->TryAcquire("busy", 2s);
  EXPECT_TRUE(same_thread.status().IsBusy()) << same_thread.status().ToString();
  EXPECT_EQ(TryFromOtherThread("busy", 2s), Code::kBusy);
  EXPECT_LT(MsSince(start), 2000);

  // Acquire with a timeout waits at least that long, then gives up.
  start = Clock::now();
  auto timed = engine_->Acquire("busy", 2s, 300ms);
  const int64_t waited = MsSince(start);
  EXPECT_TRUE(timed.status().IsTimeout()) << timed.status().ToString();
  EXPECT_GE(waited, 300);
  EXPECT_LT(waited, 5000);

  // A zero timeout is one attempt.
  auto zero = engine_->Acquire("busy", 2s, 0ms);
  EXPECT_TRUE(zero.status().IsTimeout()) << zero.status().ToString();

  // While another thread of this process waits in the queue, TryAcquire is
  // Busy too, and a queued Acquire still times out.
  std::atomic<bool> started{false};
  Code waiter_code = Code::kOk;
  std::thread waiter([&] {
    started = true;
    waiter_code = engine_->Acquire("busy", 2s, 400ms).status().code();
  });
  EXPECT_TRUE(WaitFor([&] { return started.load(); }, 2s));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(TryFromOtherThread("busy", 2s), Code::kBusy);
  start = Clock::now();
  auto queued = engine_->Acquire("busy", 2s, 200ms);
  EXPECT_TRUE(queued.status().IsTimeout()) << queued.status().ToString();
  EXPECT_GE(MsSince(start), 200);
  waiter.join();
  EXPECT_EQ(waiter_code, Code::kTimeout);

  // The holder is unaffected by all of it.
  EXPECT_FALSE((*held)->lost());
  EXPECT_TRUE((*held)->Release().ok());
  auto after = engine_->TryAcquire("busy", 2s);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_NE(*after, nullptr);
  EXPECT_GT((*after)->fencing_token(), (*held)->fencing_token());
}

TEST_F(lock_test, WaiterWakesPromptlyOnReleaseNotAtLeaseExpiry) {
  auto holder = engine_->Acquire("wake", 30s, 1s);
  ASSERT_TRUE(holder.ok()) << holder.status().ToString();
  const uint64_t first_token = (*holder)->fencing_token();

  std::atomic<bool> started{false};
  Clock::time_point called, got;
  Result<std::unique_ptr<Lock>> waited = Status::Busy("not run");
  std::thread waiter([&] {
    called = Clock::now();
    started = true;
    waited = engine_->Acquire("wake", 30s, 10s);
    got = Clock::now();
  });
  EXPECT_TRUE(WaitFor([&] { return started.load(); }, 2s));
  std::this_thread::sleep_for(150ms);  // let it block
  const auto released = Clock::now();
  EXPECT_TRUE((*holder)->Release().ok());
  waiter.join();

  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  ASSERT_NE(*waited, nullptr);
  EXPECT_GT((*waited)->fencing_token(), first_token);
  EXPECT_GE(MsBetween(called, got), 100) << "the waiter was not blocked";
  EXPECT_LT(MsBetween(released, got), 250)
      << "the waiter did not wake on the release (lease is 30 s)";
}

TEST_F(lock_test, WaitersOfOneProcessAcquireInArrivalOrder) {
  auto holder = engine_->Acquire("fifo", 5s, 1s);
  ASSERT_TRUE(holder.ok()) << holder.status().ToString();

  constexpr int kWaiters = 5;
  std::mutex order_mu;
  std::vector<int> order;
  std::vector<uint64_t> tokens;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&, i] {
      auto lock = engine_->Acquire("fifo", 5s, 15s);
      if (!lock.ok()) {
        ++failures;
        return;
      }
      {
        std::lock_guard<std::mutex> g(order_mu);
        order.push_back(i);
        tokens.push_back((*lock)->fencing_token());
      }
      std::this_thread::sleep_for(5ms);
      if (!(*lock)->Release().ok()) ++failures;
    });
    std::this_thread::sleep_for(60ms);  // so that waiter i is queued before i+1 arrives
  }
  EXPECT_TRUE((*holder)->Release().ok());
  for (auto& t : threads) t.join();

  EXPECT_EQ(failures.load(), 0);
  std::vector<int> expected;
  for (int i = 0; i < kWaiters; ++i) expected.push_back(i);
  EXPECT_EQ(order, expected);
  for (size_t i = 1; i < tokens.size(); ++i) EXPECT_LT(tokens[i - 1], tokens[i]);
}

// A waiter queued behind another waiter of its process becomes the head when
// that one gets the lock. If the new holder then stops renewing, the head
// must take the lock over after the lease, not sleep until its own timeout.
TEST_F(lock_test, QueuedWaiterTakesOverFromAHolderOfItsProcessThatStopsRenewing) {
  auto first = engine_->Acquire("queued", 5s, 1s);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  std::unique_ptr<Lock> second_lock;
  std::thread second([&] {  // the head: gets the lock, never renews it
    auto l = engine_->Acquire("queued", 200ms, 5s, LockOptions{.auto_renew = false});
    if (l.ok()) second_lock = std::move(*l);
  });
  std::this_thread::sleep_for(60ms);
  Result<std::unique_ptr<Lock>> third = Status::Busy("not run");
  Clock::time_point third_done;
  std::thread waiter([&] {  // queued behind the head
    third = engine_->Acquire("queued", 5s, 8s);
    third_done = Clock::now();
  });
  std::this_thread::sleep_for(60ms);
  const auto released = Clock::now();
  ASSERT_TRUE((*first)->Release().ok());
  second.join();
  waiter.join();
  ASSERT_TRUE(second_lock != nullptr);
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_GT((*third)->fencing_token(), second_lock->fencing_token());
  EXPECT_TRUE(second_lock->lost());
  // Lease 200 ms: lost at about 160 ms, taken over by about 600 ms. The
  // bound only separates that from sleeping until the 8 s timeout.
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(third_done - released).count(),
            3000);
}

// A holder that stops renewing loses the lock; a waiter then gets it with a
// larger token, and the stale handle can neither release nor write.
TEST_F(lock_test, UnrenewedHolderLosesLockToWaiter) {
  const LockOptions no_renew{.auto_renew = false};
  LostRecorder lost;  // outlives the handle it watches
  const auto t0 = Clock::now();
  auto stale = engine_->Acquire("exp", 300ms, 1s, no_renew);
  ASSERT_TRUE(stale.ok()) << stale.status().ToString();
  (*stale)->on_lost(lost.Callback());
  EXPECT_FALSE((*stale)->lost());

  Result<std::unique_ptr<Lock>> next = Status::Busy("not run");
  Clock::time_point got;
  std::thread waiter([&] {
    next = engine_->Acquire("exp", 300ms, 5s);
    got = Clock::now();
  });
  waiter.join();
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  ASSERT_NE(*next, nullptr);
  // The holder counts itself lost at lease - margin (300 - 60 ms); nobody
  // may have the lock before that.
  EXPECT_GE(MsBetween(t0, got), 240);
  EXPECT_LT(MsBetween(t0, got), 3000);
  EXPECT_GT((*next)->fencing_token(), (*stale)->fencing_token());

  EXPECT_TRUE((*stale)->lost());
  ASSERT_TRUE(lost.WaitForCall(3s)) << "on_lost never fired";
  EXPECT_EQ(lost.Calls(), 1);
  EXPECT_EQ(lost.code, Code::kLockLost);

  // The stale handle's Release is LockLost, every time, and frees nothing.
  Status first = (*stale)->Release();
  EXPECT_TRUE(first.IsLockLost()) << first.ToString();
  EXPECT_TRUE((*stale)->Release().IsLockLost());
  EXPECT_EQ(TryFromOtherThread("exp", 300ms), Code::kBusy);
  EXPECT_EQ(lost.Calls(), 1);

  // Only the new holder's token writes.
  auto stale_write = data_->Put("k", "stale", Fenced("exp", (*stale)->fencing_token()));
  EXPECT_TRUE(stale_write.status().IsLockLost()) << stale_write.status().ToString();
  EXPECT_TRUE(data_->Get("k").status().IsNotFound());
  auto good = data_->Put("k", "fresh", Fenced("exp", (*next)->fencing_token()));
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_FALSE((*next)->lost());
  EXPECT_TRUE((*next)->Release().ok());
}

// With the lock thread paused, the holder's record stays in place unrenewed;
// a waiter takes it over by compare-and-swap after lease + margin, and the
// stale holder's Release fails its CAS instead of deleting the new lock or
// handing it to another waiter.
TEST_F(lock_test, WaiterTakesOverUnrenewedRecordAfterLeasePlusMargin) {
  const LockOptions no_renew{.auto_renew = false};
  LockThreadStall stall;
  auto staller = stall.Start(*engine_);
  ASSERT_NE(staller, nullptr) << "the lock thread never declared the staller lost";

  LostRecorder lost;
  auto stale = engine_->Acquire("taken", 300ms, 1s, no_renew);
  ASSERT_TRUE(stale.ok()) << stale.status().ToString();
  (*stale)->on_lost(lost.Callback());

  const auto t0 = Clock::now();
  Result<std::unique_ptr<Lock>> next = Status::Busy("not run");
  Clock::time_point got;
  std::thread waiter([&] {
    // A long lease of its own, as the paused lock thread renews nothing;
    // a margin of 60 ms.
    next = engine_->Acquire("taken", 2s, 5s, {.margin = 60ms});
    got = Clock::now();
  });
  waiter.join();
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  // The stale record's lease of 300 ms + the waiter's margin of 60 ms, from
  // its first look.
  EXPECT_GE(MsBetween(t0, got), 350);
  EXPECT_LT(MsBetween(t0, got), 3000);
  EXPECT_GT((*next)->fencing_token(), (*stale)->fencing_token());

  // Another thread queues for the lock and sleeps.
  std::atomic<bool> third_got{false};
  Result<std::unique_ptr<Lock>> third = Status::Busy("not run");
  Clock::time_point third_at;
  std::thread waiter3([&] {
    third = engine_->Acquire("taken", 300ms, 10s);
    third_at = Clock::now();
    third_got = true;
  });
  std::this_thread::sleep_for(100ms);

  // Nothing has told the stale handle yet, but it judges its own lease.
  EXPECT_TRUE((*stale)->lost());
  EXPECT_EQ(lost.Calls(), 0);
  Status released = (*stale)->Release();
  EXPECT_TRUE(released.IsLockLost()) << released.ToString();
  EXPECT_TRUE(lost.WaitForCall(1s));
  EXPECT_EQ(lost.code, Code::kLockLost);
  EXPECT_EQ(lost.thread, std::this_thread::get_id()) << "the releasing thread found the loss";
  stall.Release();

  // The new holder still holds: no third party, no waiter got it.
  EXPECT_EQ(TryFromOtherThread("taken", 300ms), Code::kBusy);
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(third_got.load()) << "the stale release handed a held lock to a waiter";
  auto stale_write = data_->Put("k", "stale", Fenced("taken", (*stale)->fencing_token()));
  EXPECT_TRUE(stale_write.status().IsLockLost()) << stale_write.status().ToString();
  auto good = data_->Put("k", "fresh", Fenced("taken", (*next)->fencing_token()));
  EXPECT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_FALSE((*next)->lost());

  // Its own release hands the lock on at once.
  const auto released_at = Clock::now();
  EXPECT_TRUE((*next)->Release().ok());
  waiter3.join();
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_GT((*third)->fencing_token(), (*next)->fencing_token());
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(third_at - released_at).count(),
            250);
}

// The same with nobody waiting: the stale Release's compare-and-swap delete
// fails and the new holder keeps the lock.
TEST_F(lock_test, StaleReleaseDeletesNothing) {
  LockThreadStall stall;
  auto staller = stall.Start(*engine_);
  ASSERT_NE(staller, nullptr) << "the lock thread never declared the staller lost";
  auto stale = engine_->Acquire("taken", 100ms, 1s, {.auto_renew = false});
  ASSERT_TRUE(stale.ok()) << stale.status().ToString();
  auto next = engine_->Acquire("taken", 2s, 5s, {.margin = 20ms});
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_GT((*next)->fencing_token(), (*stale)->fencing_token());
  Status released = (*stale)->Release();
  EXPECT_TRUE(released.IsLockLost()) << released.ToString();
  stall.Release();
  EXPECT_EQ(TryFromOtherThread("taken", 300ms), Code::kBusy);
  EXPECT_TRUE(data_->Put("k", "v", Fenced("taken", (*next)->fencing_token())).ok());
  EXPECT_TRUE((*next)->Release().ok());
}

TEST_F(lock_test, UnrenewedLockIsLostAndCallbackFiresWithNobodyWaiting) {
  LostRecorder lost, late;
  const auto t0 = Clock::now();
  auto lock = engine_->Acquire("alone", 200ms, 1s, {.auto_renew = false});
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  (*lock)->on_lost(lost.Callback());
  EXPECT_FALSE((*lock)->lost());

  ASSERT_TRUE(lost.WaitForCall(3s)) << "on_lost never fired";
  EXPECT_EQ(lost.code, Code::kLockLost);
  EXPECT_NE(lost.thread, std::this_thread::get_id());
  // lease - margin = 200 - 40 ms.
  EXPECT_GE(MsBetween(t0, lost.when), 160);
  EXPECT_TRUE((*lock)->lost());

  // A callback registered after the loss runs at once, on this thread.
  (*lock)->on_lost(late.Callback());
  EXPECT_EQ(late.Calls(), 1);
  EXPECT_EQ(late.code, Code::kLockLost);
  EXPECT_EQ(late.thread, std::this_thread::get_id());

  EXPECT_TRUE((*lock)->Renew().IsLockLost());
  EXPECT_TRUE((*lock)->Release().IsLockLost());
  EXPECT_EQ(lost.Calls(), 1) << "on_lost fired more than once";
}

TEST_F(lock_test, ReleaseDoesNotFireOnLost) {
  LostRecorder lost;
  auto lock = engine_->Acquire("rel", 300ms, 1s);
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  (*lock)->on_lost(lost.Callback());
  EXPECT_FALSE((*lock)->lost());
  EXPECT_TRUE((*lock)->Release().ok());
  EXPECT_TRUE((*lock)->lost()) << "lock.h: lost() is true once Release() ran";
  EXPECT_TRUE((*lock)->Release().ok()) << "Release is idempotent";
  EXPECT_TRUE((*lock)->Renew().IsLockLost());
  std::this_thread::sleep_for(400ms);  // past the lease: still no callback
  EXPECT_EQ(lost.Calls(), 0);
}

TEST_F(lock_test, AutoRenewalKeepsLockPastItsLease) {
  LostRecorder lost;
  auto lock = engine_->Acquire("renewed", 300ms, 1s);
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  const uint64_t token = (*lock)->fencing_token();
  (*lock)->on_lost(lost.Callback());

  std::this_thread::sleep_for(900ms);  // three leases

  EXPECT_FALSE((*lock)->lost());
  EXPECT_EQ(lost.Calls(), 0);
  EXPECT_EQ(TryFromOtherThread("renewed", 300ms), Code::kBusy);
  // Renewals rewrote the record (new revisions) but kept the token.
  auto locks = engine_->OpenBucket("locks");
  ASSERT_TRUE(locks.ok());
  auto entry = (*locks)->GetEntry("renewed");
  ASSERT_TRUE(entry.ok()) << entry.status().ToString();
  EXPECT_GT(entry->revision, token) << "no renewal happened";
  EXPECT_EQ((*lock)->fencing_token(), token);
  auto fenced = data_->Put("k", "v", Fenced("renewed", token));
  EXPECT_TRUE(fenced.ok()) << fenced.status().ToString();
  auto renewal_rev = data_->Put("k", "v", Fenced("renewed", entry->revision));
  EXPECT_TRUE(renewal_rev.status().IsLockLost()) << "a renewal's revision is not a token";

  EXPECT_TRUE((*lock)->Renew().ok());
  EXPECT_TRUE((*lock)->Release().ok());
  EXPECT_EQ(TryFromOtherThread("renewed", 300ms), Code::kOk);
}

// A lock acquired while the lock thread is busy elsewhere must still be
// renewed once that thread is free again.
TEST_F(lock_test, LockAcquiredWhileLockThreadIsBusyIsStillRenewed) {
  LockThreadStall stall;
  auto staller = stall.Start(*engine_);
  ASSERT_NE(staller, nullptr) << "the lock thread never declared the staller lost";

  auto lock = engine_->Acquire("late", 300ms, 1s);
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  std::this_thread::sleep_for(20ms);
  stall.Release();

  std::this_thread::sleep_for(900ms);
  EXPECT_FALSE((*lock)->lost());
  EXPECT_EQ(TryFromOtherThread("late", 300ms), Code::kBusy);
  EXPECT_TRUE((*lock)->Release().ok());
}

// Many short-lease locks held at once, acquired while another thread churns
// a lock: none may miss its renewals.
TEST_F(lock_test, ManyConcurrentLocksAllStayRenewedUnderChurn) {
  std::atomic<bool> stop{false};
  std::atomic<int> churned{0};
  std::thread churn([&] {
    while (!stop) {
      auto l = engine_->Acquire("churn", 100ms, 1s);
      if (l.ok()) ++churned;
    }
  });
  constexpr int kLocks = 6;
  std::atomic<int> lost_count{0}, failures{0}, not_busy{0};
  for (int round = 0; round < 2; ++round) {
    std::vector<std::thread> holders;
    for (int i = 0; i < kLocks; ++i) {
      holders.emplace_back([&, i] {
        const std::string name = "held." + std::to_string(i);
        std::this_thread::sleep_for(std::chrono::milliseconds(7 * i));
        // Leases long enough that a loaded 2-core machine does not starve
        // the renewal thread past lease - margin (400 ms here).
        auto l = engine_->Acquire(name, 500ms, 2s);
        if (!l.ok()) {
          ++failures;
          return;
        }
        std::this_thread::sleep_for(1500ms);  // three leases
        if ((*l)->lost()) ++lost_count;
        auto other = engine_->TryAcquire(name, 500ms);
        if (!other.status().IsBusy()) ++not_busy;
        if (!(*l)->Release().ok()) ++lost_count;
      });
    }
    for (auto& t : holders) t.join();
  }
  stop = true;
  churn.join();
  EXPECT_GT(churned.load(), 0);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(lost_count.load(), 0);
  EXPECT_EQ(not_busy.load(), 0);
}

TEST_F(lock_test, FencedWritesCommitOnlyWithTheCurrentToken) {
  auto lock = engine_->Acquire("f", 2s, 1s);
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  const uint64_t token = (*lock)->fencing_token();

  auto put = data_->Put("k", "v1", Fenced("f", token));
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  const uint64_t last = data_->LastRevision();

  // Any other token is stale, for every kind of write; nothing is written.
  for (uint64_t bad : {token - 1, token + 1, uint64_t{0}}) {
    const WriteOptions w = Fenced("f", bad);
    EXPECT_TRUE(data_->Put("k", "x", w).status().IsLockLost()) << bad;
    EXPECT_TRUE(data_->Create("new", "x", w).status().IsLockLost()) << bad;
    EXPECT_TRUE(data_->Update("k", "x", *put, w).status().IsLockLost()) << bad;
    EXPECT_TRUE(data_->Delete("k", std::nullopt, w).status().IsLockLost()) << bad;
    EXPECT_TRUE(data_->Purge("k", std::nullopt, w).status().IsLockLost()) << bad;
  }
  EXPECT_EQ(data_->LastRevision(), last);
  EXPECT_EQ(ValueOf(*data_, "k"), "v1");
  EXPECT_TRUE(data_->Get("new").status().IsNotFound());

  // The right token works for every kind of write.
  const WriteOptions ok = Fenced("f", token);
  auto upd = data_->Update("k", "v2", *put, ok);
  ASSERT_TRUE(upd.ok()) << upd.status().ToString();
  EXPECT_TRUE(data_->Create("new", "n", ok).ok());
  EXPECT_TRUE(data_->Delete("new", std::nullopt, ok).ok());
  EXPECT_TRUE(data_->Purge("new", std::nullopt, ok).ok());
  // A fence does not bypass the write's own precondition.
  EXPECT_TRUE(data_->Update("k", "x", *put, ok).status().IsConflict());

  // After release the token is stale.
  ASSERT_TRUE((*lock)->Release().ok());
  const uint64_t before = data_->LastRevision();
  auto after_release = data_->Put("k", "late", ok);
  EXPECT_TRUE(after_release.status().IsLockLost()) << after_release.status().ToString();
  EXPECT_EQ(data_->LastRevision(), before);
  EXPECT_EQ(ValueOf(*data_, "k"), "v2");

  // A lock that was never acquired fences nothing in.
  auto never = data_->Put("k", "x", Fenced("never.taken", 1));
  EXPECT_TRUE(never.status().IsLockLost()) << never.status().ToString();
  // A bad lock name in a fence is the caller's error.
  auto bad_name = data_->Put("k", "x", Fenced("a..b", token));
  EXPECT_TRUE(bad_name.status().IsInvalidArgument()) << bad_name.status().ToString();
  EXPECT_EQ(data_->LastRevision(), before);

  // The locks bucket may hold data too: a fenced write there is checked
  // against the lock in the same bucket, but never overwrites the lock's own
  // record.
  auto again = engine_->Acquire("f", 2s, 1s);
  ASSERT_TRUE(again.ok());
  auto locks = engine_->OpenBucket("locks");
  ASSERT_TRUE(locks.ok());
  const WriteOptions current = Fenced("f", (*again)->fencing_token());
  EXPECT_TRUE((*locks)->Put("data.x", "y", current).ok());
  EXPECT_EQ(ValueOf(**locks, "data.x"), "y");
  const uint64_t locks_last = (*locks)->LastRevision();
  auto stale = (*locks)->Put("data.x", "z", Fenced("f", token));
  EXPECT_TRUE(stale.status().IsLockLost()) << stale.status().ToString();
  auto own_record = (*locks)->Put("f", "y", current);
  EXPECT_TRUE(own_record.status().IsInvalidArgument()) << own_record.status().ToString();
  EXPECT_EQ((*locks)->LastRevision(), locks_last);
  EXPECT_FALSE((*again)->lost());
}

// lock.h lets an on_lost callback use its handle, and so drop it. When the
// handle outlives the engine, that drops the last reference to the lock
// machinery from inside its own timer thread: it must end cleanly, not
// join itself (std::terminate) or touch freed memory.
TEST(lock_teardown, LastHandleDroppedInsideItsOwnOnLostCallback) {
  TempDir dir;
  auto engine = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  auto lock = (*engine)->Acquire("drop", 100ms, 1s, LockOptions{.auto_renew = false});
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  engine->reset();  // the handle is now the last owner

  auto handle = std::make_shared<std::unique_ptr<Lock>>(std::move(*lock));
  std::mutex mu;
  std::condition_variable cv;
  bool dropped = false;
  Code why = Code::kOk;
  (*handle)->on_lost([&, handle](const Status& s) {
    handle->reset();  // the last handle, from inside its own callback
    std::lock_guard<std::mutex> g(mu);
    why = s.code();
    dropped = true;
    cv.notify_all();
  });
  Lock* raw = handle->get();
  handle.reset();  // only the callback keeps it now
  (void)raw;
  std::unique_lock<std::mutex> g(mu);
  ASSERT_TRUE(cv.wait_for(g, 5s, [&] { return dropped; })) << "on_lost never fired";
  EXPECT_EQ(why, Code::kLockLost);
  g.unlock();
  std::this_thread::sleep_for(100ms);  // the timer thread finishes after the callback
  // The store is released too: it can be opened again.
  auto again = Engine::Open({.path = dir.path()});
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TEST(lock_custom_bucket, LocksLiveInTheConfiguredBucket) {
  TempDir dir;
  auto engine = Engine::Open({.path = dir.path(), .locks_bucket = "mylocks"});
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  auto lock = (*engine)->Acquire("L", 2s, 1s);
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  const WriteOptions w{.fence = Fence{"L", (*lock)->fencing_token()}};
  auto mine = (*engine)->OpenBucket("mylocks");
  ASSERT_TRUE(mine.ok());
  EXPECT_TRUE((*mine)->GetEntry("L").ok());
  // Data beside the lock is fenced by it; the lock's own record is not a
  // fenced write's to change.
  EXPECT_TRUE((*mine)->Put("x", "y", w).ok());
  EXPECT_TRUE((*mine)->Put("L", "y", w).status().IsInvalidArgument());
  // "locks" is an ordinary bucket for this engine.
  auto plain = (*engine)->OpenBucket("locks");
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE((*plain)->Put("x", "y", w).ok());
}

TEST(lock_custom_bucket, LockOptionsPutOneLockInTheBucketOfItsData) {
  TempDir dir;
  auto engine = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  auto jobs = (*engine)->OpenBucket("jobs");
  auto other = (*engine)->OpenBucket("other");
  auto locks = (*engine)->OpenBucket("locks");
  ASSERT_TRUE(jobs.ok() && other.ok() && locks.ok());
  auto lock = (*engine)->Acquire("lock.a", 2s, 1s, {.locks_bucket = "jobs"});
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  const Fence fence = (*lock)->fence();
  EXPECT_EQ(fence.lock, "lock.a");
  EXPECT_EQ(fence.token, (*lock)->fencing_token());
  EXPECT_EQ(fence.locks_bucket, "jobs");
  EXPECT_TRUE((*jobs)->GetEntry("lock.a").ok());
  EXPECT_TRUE((*locks)->GetEntry("lock.a").status().IsNotFound());
  // The same name in the default locks bucket is another lock.
  auto same_name = (*engine)->TryAcquire("lock.a", 2s);
  ASSERT_TRUE(same_name.ok()) << same_name.status().ToString();
  EXPECT_TRUE((*jobs)->Put("job.1", "v", {.fence = fence}).ok());
  EXPECT_TRUE((*other)->Put("job.1", "v", {.fence = fence}).ok());  // checked in "jobs"
  EXPECT_EQ((*engine)->TryAcquire("lock.a", 2s, {.locks_bucket = "jobs"}).status().code(),
            Code::kBusy);
  ASSERT_TRUE((*lock)->Release().ok());
  auto stale = (*jobs)->Put("job.1", "late", {.fence = fence});
  EXPECT_TRUE(stale.status().IsLockLost()) << stale.status().ToString();
  EXPECT_EQ(ValueOf(**jobs, "job.1"), "v");
  auto bad = (*engine)->Acquire("x", 2s, 1s, {.locks_bucket = "no such"});
  EXPECT_TRUE(bad.status().IsInvalidArgument()) << bad.status().ToString();
}

// Two buckets, each holding the lock that fences writes to the other: fenced
// writes in both directions at once never deadlock.
TEST(lock_custom_bucket, BucketsFencingEachOthersWritesDoNotDeadlock) {
  TempDir dir;
  auto engine = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(engine.ok());
  auto a = (*engine)->OpenBucket("a");
  auto b = (*engine)->OpenBucket("b");
  ASSERT_TRUE(a.ok() && b.ok());
  auto in_a = (*engine)->Acquire("lock.x", 10s, 1s, {.locks_bucket = "a"});
  auto in_b = (*engine)->Acquire("lock.y", 10s, 1s, {.locks_bucket = "b"});
  ASSERT_TRUE(in_a.ok() && in_b.ok());
  std::atomic<int> failures{0};
  auto run = [&](Bucket& target, const Lock& lock) {
    for (int i = 0; i < 2000; ++i) {
      if (!target.Put("k" + std::to_string(i % 7), "v", {.fence = lock.fence()}).ok()) ++failures;
    }
  };
  std::thread one([&] { run(**b, **in_a); });  // writes to b, fenced by a lock in a
  std::thread two([&] { run(**a, **in_b); });  // writes to a, fenced by a lock in b
  one.join();
  two.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(lock_test, BadArgumentsAreInvalidArgument) {
  for (const char* name : {"", "a..b", ".a", "a.", "a b", "a*"}) {
    EXPECT_TRUE(engine_->Acquire(name, 1s, 1s).status().IsInvalidArgument()) << "'" << name << "'";
    EXPECT_TRUE(engine_->TryAcquire(name, 1s).status().IsInvalidArgument()) << "'" << name << "'";
  }
  EXPECT_TRUE(engine_->Acquire("ok", 9ms, 1s).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->Acquire("ok", 0ms, 1s).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->Acquire("ok", -5ms, 1s).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->TryAcquire("ok", 9ms).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->Acquire("ok", 1s, -1ms).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->Acquire("ok", 1s, 1s, {.margin = 500ms}).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->Acquire("ok", 1s, 1s, {.margin = -1ms}).status().IsInvalidArgument());
  // Nothing was taken by the refused calls, and the limits themselves pass.
  auto ok = engine_->TryAcquire("ok", 10ms, {.auto_renew = false});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_NE(*ok, nullptr);
}

// ---- A lock held by a process that dies ----

constexpr const char* kChildDirVar = "REVKV_LOCK_TEST_CHILD_DIR";
constexpr const char* kChildFdsVar = "REVKV_LOCK_TEST_CHILD_FDS";
constexpr int64_t kChildLeaseMs = 1500;

// In the child (the test binary re-executed with kChildDirVar set): opens
// the engine, takes lock "L", writes its token to the pipe, then waits until
// the parent kills it (or dies: EOF on the control pipe).
class ChildHolder : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* dir = std::getenv(kChildDirVar);
    const char* fds = std::getenv(kChildFdsVar);
    if (dir == nullptr || fds == nullptr) return;
    int out_fd = -1, ctl_fd = -1;
    if (std::sscanf(fds, "%d,%d", &out_fd, &ctl_fd) != 2) _exit(2);
    std::string line;
    auto engine = Engine::Open({.path = dir});
    std::unique_ptr<Lock> lock;
    if (!engine.ok()) {
      line = "ERR " + engine.status().ToString() + "\n";
    } else {
      auto l = (*engine)->Acquire("L", std::chrono::milliseconds(kChildLeaseMs), 5s);
      if (l.ok()) {
        lock = std::move(*l);
        line = std::to_string(lock->fencing_token()) + "\n";
      } else {
        line = "ERR " + l.status().ToString() + "\n";
      }
    }
    if (write(out_fd, line.data(), line.size()) < 0) _exit(3);
    char c;
    while (read(ctl_fd, &c, 1) != 0) {
    }
    _exit(0);
  }
};
[[maybe_unused]] const auto* const kChildEnv = ::testing::AddGlobalTestEnvironment(new ChildHolder);

// Reads one line from `fd` within `timeout`.
std::string ReadLine(int fd, std::chrono::milliseconds timeout) {
  std::string line;
  const auto deadline = Clock::now() + timeout;
  while (line.empty() || line.back() != '\n') {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  return line;
}

TEST(lock_restart, LockOfKilledProcessHoldsUntilItsLeaseExpires) {
  TempDir dir;
  // Everything the child needs is built before fork(): between fork and
  // exec only async-signal-safe calls are made.
  int out[2], ctl[2];
  ASSERT_EQ(pipe(out), 0);
  ASSERT_EQ(pipe(ctl), 0);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  env_storage.push_back(std::string(kChildDirVar) + "=" + dir.path());
  env_storage.push_back(std::string(kChildFdsVar) + "=" + std::to_string(out[1]) + "," +
                        std::to_string(ctl[0]));
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe";
  std::string filter = "--gtest_filter=lock_restart.*";  // never runs: SetUp exits first
  char* argv[] = {exe.data(), filter.data(), nullptr};

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(out[0]);
    close(ctl[1]);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    execve(exe.c_str(), argv, envp.data());
    _exit(127);
  }
  close(out[1]);
  close(ctl[0]);
  const std::string line = ReadLine(out[0], 20s);
  close(out[0]);
  kill(pid, SIGKILL);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  close(ctl[1]);
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
      << "child exited early; it said: " << line;
  ASSERT_FALSE(line.empty());
  ASSERT_NE(line.substr(0, 3), "ERR") << line;
  const uint64_t child_token = std::stoull(line);
  ASSERT_GT(child_token, 0u);

  auto engine = Engine::Open({.path = dir.path()});
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  // Our own lease is shorter: the holder's recorded lease is what counts.
  const auto lease = 400ms;
  const auto first_look = Clock::now();
  auto try_now = (*engine)->TryAcquire("L", lease);
  EXPECT_TRUE(try_now.status().IsBusy()) << try_now.status().ToString();
  auto short_wait = (*engine)->Acquire("L", lease, 300ms);
  EXPECT_TRUE(short_wait.status().IsTimeout()) << short_wait.status().ToString();

  auto data = (*engine)->OpenBucket("data");
  ASSERT_TRUE(data.ok());
  // Until it expires, the dead holder's token still fences writes in.
  EXPECT_TRUE((*data)->Put("k", "from-dead-holder", {.fence = Fence{"L", child_token}}).ok());

  auto taken = (*engine)->Acquire("L", lease, 10s);
  const int64_t waited = MsSince(first_look);
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  ASSERT_NE(*taken, nullptr);
  EXPECT_GE(waited, kChildLeaseMs) << "taken over before the dead holder's lease ran out";
  EXPECT_LT(waited, 8000);
  EXPECT_GT((*taken)->fencing_token(), child_token);

  auto stale = (*data)->Put("k", "stale", {.fence = Fence{"L", child_token}});
  EXPECT_TRUE(stale.status().IsLockLost()) << stale.status().ToString();
  EXPECT_EQ(ValueOf(**data, "k"), "from-dead-holder");
  EXPECT_TRUE((*data)->Put("k", "new", {.fence = Fence{"L", (*taken)->fencing_token()}}).ok());
  EXPECT_TRUE((*taken)->Release().ok());
}

}  // namespace
}  // namespace revkv
