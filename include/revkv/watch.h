// Watch: an ordered stream of a bucket's changes.
//
//   auto w = bucket->Watch("job.>", {.start = revkv::WatchStart::kLatest});
//   while (true) {
//     auto e = (*w)->Next(std::chrono::seconds(1));
//     if (e.status().IsTimeout()) continue;
//     if (!e.ok()) break;  // cancelled, or the bucket went away
//     handle(*e);
//   }

#ifndef REVKV_WATCH_H_
#define REVKV_WATCH_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "revkv/entry.h"
#include "revkv/result.h"

namespace revkv {

enum class WatchStart : uint8_t {
  // First the latest entry of every matching key (tombstones included), in
  // revision order, then every later change. Like `nats kv watch`.
  kLatest,
  // Every retained entry with revision >= from_revision, then every later
  // change.
  kFromRevision,
  // Only changes committed after Watch() returns.
  kUpdatesOnly,
};

struct WatchOptions {
  // Default: kLatest.
  WatchStart start = WatchStart::kLatest;
  // With kFromRevision: the first revision wanted. 0 is taken as 1.
  uint64_t from_revision = 0;
  // Changes held in memory for a watcher before it falls back to reading the
  // bucket's revision log. Writers never wait for a watcher: a consumer more
  // than this many entries behind reads the missed changes from the store
  // instead. It still gets them in order without duplicates; the only
  // entries it can miss are earlier revisions of a key that the bucket's
  // history setting dropped before the consumer read them, exactly as with a
  // lagging NATS consumer.
  // Default: 4096.
  size_t max_pending = 4096;
};

// A live watch. Destroying it cancels it. Thread safety: Next() may be
// called from one thread at a time; Cancel() from any thread.
class Watcher {
 public:
  virtual ~Watcher() = default;

  // Returns the next entry, waiting up to `timeout` for one.
  // Timeout: nothing arrived in time. Unavailable: the watch was cancelled.
  // Corruption: a damaged record.
  virtual Result<Entry> Next(std::chrono::milliseconds timeout) = 0;

  // Stops the watch: a blocked Next() returns Unavailable, and a callback
  // watch makes no further calls once Cancel() returns (unless called from
  // the callback itself).
  virtual void Cancel() = 0;

  // The revision of the last entry delivered (returned by Next() or passed
  // to the callback), 0 before the first. After Cancel() returns it is the
  // last entry the callback got: one taken from the queue but dropped
  // because of the Cancel() does not count.
  virtual uint64_t last_revision() const = 0;
};

// For callback watches: called for each entry, in order, from a thread the
// watch owns. An error (Corruption) is delivered once, then the watch stops.
using WatchCallback = std::function<void(const Result<Entry>&)>;

}  // namespace revkv

#endif  // REVKV_WATCH_H_
