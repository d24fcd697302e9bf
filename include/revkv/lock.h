// Lease locks with fencing tokens.
//
//   auto lock = engine->Acquire("jobs.scheduler", std::chrono::seconds(10),
//                               std::chrono::seconds(30));
//   if (!lock.ok()) { ... Timeout ... }
//   bucket->Put("job.42", "v", {.fence = (*lock)->fence()});
//   // The destructor releases the lock.
//
// A lock is a record in a locks bucket (LockOptions::locks_bucket, by
// default the engine's Options::locks_bucket),
// keyed by the lock's name, which follows the key rules. Acquiring it is a
// Create; the fencing token is the revision of that write, so tokens are
// strictly increasing across acquisitions. The holder renews the lease with
// a compare-and-swap every lease/3. A waiter that sees the same record
// unrenewed for lease + margin on its own monotonic clock takes the lock
// over with a compare-and-swap, so a lock left by a crashed process expires
// after its lease. Release is a compare-and-swap delete, so a stale holder
// never frees a newer holder's lock.
//
// Waiting is driven by the store's commit notifications: a release wakes the
// next waiter at once; a timer runs only for lease expiry. Waiters in one
// process queue FIFO per lock name, and only the head contends.
//
// On an engine with NATS the locks bucket is replicated, so the lock is
// shared by every process on the server, and the revisions are stream
// sequences. Keep the lock in the bucket of the data it guards
// (LockOptions::locks_bucket, or Options::locks_bucket for every lock; name
// locks with a prefix such as "lock.", since they share its keys) and fence the writes: on nats-server
// 2.11+ a fenced Put, Delete or Purge is one publish that the server stores
// only while the lock's record still carries the writer's token, so a
// holder that lost the lock without knowing it writes nothing (LockLost).
// A fenced compare-and-swap (Create, Update, UpdateWithRetry, or an expected
// revision) needs nats-server 2.12+: one atomic batch rewrites the lock's
// record with the token and makes the write, both or neither. With the lock
// in the data's bucket, the acquisition follows every earlier holder's
// write in the stream: once bucket->LastRevision() >= fencing_token() (or
// after Sync), a read under the lock is current. With the lock in another
// bucket, acquiring it does not bring the data bucket's replica up to date
// with the previous holder's writes: call bucket->Sync() after Acquire
// before reading.

#ifndef REVKV_LOCK_H_
#define REVKV_LOCK_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "revkv/options.h"
#include "revkv/status.h"

namespace revkv {

// A held lock. Destroying it releases the lock (if still held).
// Thread safety: all methods may be called from any thread.
class Lock {
 public:
  virtual ~Lock() = default;

  virtual const std::string& name() const = 0;

  // The revision of the write that acquired the lock: strictly larger than
  // every earlier acquisition's. Pass it in a Fence to make writes safe
  // against a holder that lost the lock without knowing it yet.
  virtual uint64_t fencing_token() const = 0;

  // The fence for writes made under this lock: its name, token and bucket.
  //   bucket->Put("job.42", "v", {.fence = lock->fence()});
  virtual Fence fence() const = 0;

  // True once the lock is known lost: a renewal found another holder, or
  // lease - margin passed without a successful renewal, or Release() ran.
  virtual bool lost() const = 0;

  // Registers `callback`, called once with LockLost when the lock is lost
  // (not when it is released). Called at once, on this thread, if the lock
  // is already lost. Callbacks run on the thread that finds the loss,
  // usually the engine's lock thread, with no lock of the handle held: keep
  // them short; they may call lost() or Release().
  virtual void on_lost(std::function<void(const Status&)> callback) = 0;

  // Renews the lease now.
  // LockLost: the lock was taken over or had expired. IOError: as writes.
  virtual Status Renew() = 0;

  // Releases the lock. OK; LockLost if it had already been lost. A lost
  // lock's record is still deleted if, and only if, nobody has taken it over
  // since (compare-and-swap), so the next waiter need not sit out the lease.
  // Idempotent: a second call returns the same status.
  virtual Status Release() = 0;
};

}  // namespace revkv

#endif  // REVKV_LOCK_H_
