// Engine: one per process per data directory. It owns the local store
// (RocksDB) and hands out Buckets.
//
//   auto engine = revkv::Engine::Open({.path = "/var/lib/myservice/kv"});
//   if (!engine.ok()) { ... engine.status().ToString() ... }
//   auto bucket = (*engine)->OpenBucket("jobs", {.history = 5});
//   auto rev = (*bucket)->Put("job.42", "running");
//
// Thread safety: an Engine may be used from any number of threads at once.

#ifndef REVKV_ENGINE_H_
#define REVKV_ENGINE_H_

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "revkv/bucket.h"
#include "revkv/lock.h"
#include "revkv/options.h"
#include "revkv/result.h"
#include "revkv/statistics.h"

namespace revkv {

class Engine {
 public:
  // Opens (and with create_if_missing, creates) the store at options.path.
  // InvalidArgument: empty path, or bad options.
  // NotFound: no store there and create_if_missing is false.
  // Unavailable: another Engine, in this process or another, holds the store.
  // IOError: the directory cannot be created or read.
  // Corruption: the store's metadata is damaged.
  static Result<std::unique_ptr<Engine>> Open(const Options& options);

  virtual ~Engine() = default;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Opens the bucket `name`, creating it if missing. Opening an open bucket
  // again returns the same Bucket. Names use [A-Za-z0-9_-], 1..128 bytes.
  // InvalidArgument: bad name; history outside 1..kMaxHistory;
  //   max_value_size above kMaxMaxValueSize; a non-zero setting that
  //   differs from the existing bucket's, locally or on the server (the
  //   message lists each difference); a server stream of that name that is
  //   not a KV bucket; or an option the connected nats-server is too old
  //   for (the message names its version and the one needed).
  // NotFound: a read-only follower asked for a bucket that does not exist,
  //   or BucketOptions::create_if_missing is false and the server has no
  //   such bucket.
  // PermissionDenied: the server denied a request the bucket needs (binding
  //   the stream, creating its consumer, subscribing).
  // Unavailable, Timeout: the server could not be reached, or did not
  //   answer, while binding the bucket or bootstrapping its replica.
  // IOError: the store could not create the bucket or write its replica.
  // Corruption: the bucket's stored settings or replica are damaged.
  virtual Result<std::shared_ptr<Bucket>> OpenBucket(std::string_view name,
                                                     const BucketOptions& options = {}) = 0;

  // The names of the existing buckets, sorted.
  virtual std::vector<std::string> ListBuckets() = 0;

  // What this engine has done since it was opened: writes, conflicts and
  // retries by operation, with latency histograms; the replicas' applies,
  // lag and skipped messages; reconnects; lock acquires, waits, takeovers
  // and losses (revkv/statistics.h). Cheap: a copy of counters.
  virtual Statistics GetStatistics() = 0;

  // The version of the nats-server the engine's connection is on now (e.g.
  // "2.15.1"), as that server reports it; it changes with a reconnect to
  // another server (a rolling upgrade).
  // InvalidArgument: a local engine (opened without NATS servers).
  // Unavailable: not connected now.
  virtual Result<std::string> ServerVersion() = 0;

  // Acquires the lease lock `name`, waiting up to `timeout` for it.
  // Returns a handle, never null.
  // Timeout: not acquired in time; or the server confirmed the grant only
  // after lease - margin had passed since it was asked for (an election, a
  // slow link), and renewing it at once failed: a lock already lost by this
  // process's clock is never returned. A write under way when `timeout`
  // passes finishes first (within NatsOptions::write_timeout).
  // InvalidArgument: bad name (the key rules), lease under 10 ms, negative
  // timeout. IOError, Corruption: as bucket writes. The lease must outlast
  // the pauses the holder can suffer.
  virtual Result<std::unique_ptr<Lock>> Acquire(std::string_view name,
                                                std::chrono::milliseconds lease,
                                                std::chrono::milliseconds timeout,
                                                const LockOptions& options = {}) = 0;

  // Acquires `name` only if it is free (or its holder's lease has visibly
  // expired); never waits for a holder.
  // Busy: held by someone else, or granted too late to use (see Acquire).
  // Otherwise as Acquire.
  virtual Result<std::unique_ptr<Lock>> TryAcquire(std::string_view name,
                                                   std::chrono::milliseconds lease,
                                                   const LockOptions& options = {}) = 0;

  // Read-only followers only: applies the holder's commits made since the
  // last catch-up. InvalidArgument on an engine that is not a follower;
  // IOError if the store cannot be read.
  virtual Status CatchUp() = 0;

 protected:
  Engine() = default;
};

}  // namespace revkv

#endif  // REVKV_ENGINE_H_
