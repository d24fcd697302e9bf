#include "engine/local_watcher.h"

#include <rocksdb/snapshot.h>

#include "revkv/validation.h"

namespace revkv::engine {
namespace {
// Entries read from the revision log per catch-up step.
constexpr size_t kCatchUpBatch = 256;
}  // namespace

LocalWatcher::LocalWatcher(std::shared_ptr<LocalBucket> bucket, std::string filter,
                           size_t max_pending)
    : bucket_(std::move(bucket)), filter_(std::move(filter)), max_pending_(max_pending) {}

Result<std::unique_ptr<Watcher>> LocalWatcher::Start(std::shared_ptr<LocalBucket> bucket,
                                                     std::string_view filter,
                                                     const WatchOptions& options,
                                                     WatchCallback callback) {
  if (Status s = ValidateReadFilter(filter); !s.ok()) return s;
  if (options.max_pending == 0) {
    return Status::InvalidArgument("WatchOptions::max_pending is 0; give at least 1");
  }
  if (bucket->is_follower()) {
    return Status::InvalidArgument("Watch needs the engine that holds the store; a read-only "
                                   "follower follows changes with CatchUp and ChangesSince");
  }
  std::unique_ptr<LocalWatcher> w(
      new LocalWatcher(bucket, filter.empty() ? ">" : std::string(filter), options.max_pending));
  LocalWatcher* raw = w.get();

  // Fix the starting point under the bucket's write lock, so that kLatest's
  // snapshot and covered_ agree. Every watch starts in catch-up mode: the
  // first Next() reads whatever committed after covered_ from the revision
  // log, then switches to the live feed with writes held off, so no commit
  // falls between the starting point and the listener.
  std::optional<rocksdb::ManagedSnapshot> snapshot;
  bucket->RunWithWritesHeld([&](uint64_t last) {
    std::lock_guard<std::mutex> lock(raw->mu_);
    raw->catching_up_ = true;
    switch (options.start) {
      case WatchStart::kLatest:
        snapshot.emplace(bucket->db());
        raw->covered_ = last;
        break;
      case WatchStart::kUpdatesOnly:
        raw->covered_ = last;
        break;
      case WatchStart::kFromRevision:
        raw->covered_ = options.from_revision == 0 ? 0 : options.from_revision - 1;
        break;
    }
  });
  raw->listener_id_ = bucket->AddCommitListener([raw](const Entry& e) { raw->OnCommit(e); });
  if (snapshot) {
    auto latest = bucket->LatestEntries(raw->filter_, snapshot->snapshot());
    if (!latest.ok()) return latest.status();
    std::lock_guard<std::mutex> lock(raw->mu_);
    raw->initial_.assign(std::make_move_iterator(latest->begin()),
                         std::make_move_iterator(latest->end()));
  }
  if (callback) {
    raw->callback_thread_ =
        std::thread(&LocalWatcher::RunCallback, raw, std::move(callback), raw->destroyed_);
  }
  return std::unique_ptr<Watcher>(std::move(w));
}

LocalWatcher::~LocalWatcher() {
  Cancel();
  std::lock_guard<std::mutex> join(join_mu_);
  if (callback_thread_.joinable()) {
    if (callback_thread_.get_id() == std::this_thread::get_id()) {
      *destroyed_ = true;  // destroyed from its own callback: RunCallback must stop
      callback_thread_.detach();
    } else {
      callback_thread_.join();
    }
  }
}

void LocalWatcher::OnCommit(const Entry& entry) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_ || catching_up_) return;
  // Already covered: a kFromRevision watch that starts past the bucket's
  // last revision must not deliver the revisions before its start.
  if (entry.revision <= covered_) return;
  if (FilterMatches(filter_, entry.key)) {
    if (queue_.size() >= max_pending_) {
      // The consumer is too far behind: stop queueing and let it read the
      // revision log from covered_ instead. Writers never wait.
      catching_up_ = true;
      return;
    }
    queue_.push_back(entry);
    cv_.notify_all();
  }
  covered_ = entry.revision;
}

Status LocalWatcher::CatchUp() {
  uint64_t from;
  {
    std::lock_guard<std::mutex> lock(mu_);
    from = covered_;
  }
  auto changes = bucket_->ChangesSince(from, kCatchUpBatch);
  if (!changes.ok()) return changes.status();
  auto append = [this](std::vector<Entry>& entries) {
    for (Entry& e : entries) {
      covered_ = e.revision;
      if (FilterMatches(filter_, e.key)) queue_.push_back(std::move(e));
    }
  };
  if (!changes->empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (covered_ == from) append(*changes);
    return Status::OK();
  }
  // The log has nothing newer: with writes held off, take whatever committed
  // since that read and hand the feed back to the listener.
  Status status;
  bucket_->RunWithWritesHeld([&](uint64_t) {
    auto rest = bucket_->ChangesSince(from, SIZE_MAX);
    if (!rest.ok()) {
      status = rest.status();
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (covered_ != from) return;
    append(*rest);
    catching_up_ = false;
  });
  return status;
}

Result<Entry> LocalWatcher::Next(std::chrono::milliseconds timeout) {
  Result<Entry> e = Take(timeout);
  if (e.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    delivered_ = e->revision;
  }
  return e;
}

Result<Entry> LocalWatcher::Take(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (cancelled_) {
      return Status::Unavailable("the watch on bucket '" + bucket_->name() + "' was cancelled");
    }
    std::deque<Entry>* source = !initial_.empty() ? &initial_ : !queue_.empty() ? &queue_ : nullptr;
    if (source != nullptr) {
      Entry e = std::move(source->front());
      source->pop_front();
      return e;
    }
    if (catching_up_) {
      lock.unlock();
      Status s = CatchUp();
      lock.lock();
      if (!s.ok()) return s;
      continue;
    }
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && queue_.empty() &&
        !cancelled_ && !catching_up_) {
      return Status::Timeout("no change in bucket '" + bucket_->name() + "' matching '" +
                             filter_ + "' arrived in time");
    }
  }
}

void LocalWatcher::Cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
  }
  cv_.notify_all();
  bucket_->RemoveCommitListener(listener_id_);
  // join_mu_ makes a second Cancel() (or the destructor) wait for the join
  // the first one does, instead of returning early or joining twice.
  std::lock_guard<std::mutex> join(join_mu_);
  if (callback_thread_.joinable() && callback_thread_.get_id() != std::this_thread::get_id()) {
    callback_thread_.join();
  }
}

uint64_t LocalWatcher::last_revision() const {
  std::lock_guard<std::mutex> lock(mu_);
  return delivered_;
}

void LocalWatcher::RunCallback(WatchCallback callback, std::shared_ptr<bool> destroyed) {
  while (true) {
    Result<Entry> e = Take(std::chrono::milliseconds(500));
    if (!e.ok() && e.status().IsTimeout()) continue;
    {
      // An entry taken after Cancel() is dropped, and last_revision() must
      // not count it: it names the last entry the callback actually got.
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_) return;
      if (e.ok()) delivered_ = e->revision;
    }
    callback(e);
    if (*destroyed) return;  // `this` is gone
    if (!e.ok()) return;
  }
}

}  // namespace revkv::engine
