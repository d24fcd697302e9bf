// LocalWatcher: a Watch on a local bucket.
//
// Entries reach a watcher two ways. Live: the bucket's commit listener
// appends each matching entry to the watcher's queue as it commits, in
// revision order. Catch-up: when the watch starts from a revision, or the
// queue overflowed because the consumer fell behind, the consumer reads the
// bucket's revision log from where the queue left off; once the log has
// nothing newer, it switches back to live with writes briefly held off, so
// that no commit falls between the two. Writers never wait for consumers.

#ifndef REVKV_ENGINE_LOCAL_WATCHER_H_
#define REVKV_ENGINE_LOCAL_WATCHER_H_

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "engine/local_bucket.h"
#include "revkv/watch.h"

namespace revkv::engine {

class LocalWatcher final : public Watcher {
 public:
  static Result<std::unique_ptr<Watcher>> Start(std::shared_ptr<LocalBucket> bucket,
                                                std::string_view filter,
                                                const WatchOptions& options,
                                                WatchCallback callback);
  ~LocalWatcher() override;

  Result<Entry> Next(std::chrono::milliseconds timeout) override;
  void Cancel() override;
  uint64_t last_revision() const override;

 private:
  LocalWatcher(std::shared_ptr<LocalBucket> bucket, std::string filter, size_t max_pending);

  // The bucket's commit listener; runs under the bucket's write lock.
  void OnCommit(const Entry& entry);
  // Reads the revision log after covered_ into queue_, and switches to live
  // once it is drained. Called without mu_ held.
  Status CatchUp();
  // Next() without marking the entry delivered: a callback watch marks it
  // only once it knows the callback will get it (not cancelled meanwhile).
  Result<Entry> Take(std::chrono::milliseconds timeout);
  // `destroyed` is set (on the callback thread) when a callback destroys its
  // own watch; the thread then returns without touching `this`.
  void RunCallback(WatchCallback callback, std::shared_ptr<bool> destroyed);

  // Constant after construction.
  const std::shared_ptr<LocalBucket> bucket_;
  const std::string filter_;
  const size_t max_pending_;
  uint64_t listener_id_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Entry> initial_;  // GUARDED_BY(mu_): kLatest's snapshot, delivered first
  std::deque<Entry> queue_;    // GUARDED_BY(mu_): later changes, in order
  uint64_t covered_ = 0;       // GUARDED_BY(mu_): every change <= this is in queue_ or delivered
  bool catching_up_ = false;   // GUARDED_BY(mu_): the log, not the listener, feeds queue_
  bool cancelled_ = false;     // GUARDED_BY(mu_)
  uint64_t delivered_ = 0;     // GUARDED_BY(mu_): returned by Next() or passed to the callback

  std::mutex join_mu_;           // serializes joining callback_thread_
  std::thread callback_thread_;  // GUARDED_BY(join_mu_) once started
  const std::shared_ptr<bool> destroyed_ = std::make_shared<bool>(false);
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOCAL_WATCHER_H_
