#include "replication/replicated_engine.h"

#include <cstdio>

#include "replication/kv_stream.h"
#include "replication/snapshot_bootstrap.h"
#include "revkv/validation.h"

namespace revkv {

Result<std::unique_ptr<Engine>> Engine::Open(const Options& options) {
  if (!options.nats.servers.empty()) return replication::ReplicatedEngine::Open(options);
  auto engine = engine::LocalEngine::Open(options);
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<Engine>(std::move(*engine));
}

namespace replication {
namespace {
constexpr uint32_t kMaxLockHandOffs = 4;
// How long the marker of an expired lock record stays in the locks bucket:
// waiters learn of the expiry from it as it is written; this only has to
// outlive a replica's brief disconnection.
constexpr std::chrono::seconds kLocksMarkerTtl{60};
}  // namespace

Result<std::unique_ptr<Engine>> ReplicatedEngine::Open(const Options& options) {
  if (options.read_only_follower) {
    return Status::InvalidArgument("a read-only follower cannot replicate; open it without "
                                   "NatsOptions::servers");
  }
  auto conn = NatsConnection::Connect(options.nats);
  if (!conn.ok()) return conn.status();
  auto local = engine::LocalEngine::Open(options);
  if (!local.ok()) return local.status();
  return std::unique_ptr<Engine>(
      new ReplicatedEngine(std::move(*local), std::shared_ptr<NatsConnection>(std::move(*conn)),
                           options));
}

ReplicatedEngine::~ReplicatedEngine() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, bucket] : buckets_) bucket->ShutdownWrites();
}

Result<std::shared_ptr<Bucket>> ReplicatedEngine::OpenBucket(std::string_view name_view,
                                                             const BucketOptions& options) {
  if (options.local_only) return local_->OpenBucket(name_view, options);
  if (Status s = ValidateBucketName(name_view); !s.ok()) return s;
  const std::string name(name_view);
  std::lock_guard<std::mutex> lock(mu_);
  auto bucket = OpenReplicatedLocked(name, options, std::chrono::nanoseconds(0));
  if (!bucket.ok()) return bucket.status();
  return std::shared_ptr<Bucket>(*bucket);
}

Result<std::shared_ptr<ReplicatedBucket>> ReplicatedEngine::OpenReplicatedLocked(
    const std::string& name, const BucketOptions& options,
    std::chrono::nanoseconds max_age_if_created, std::chrono::seconds markers_if_created) {
  if (options.allow_atomic_batches && buckets_.count(name) != 0) {
    if (Status s = AllowAtomicBatches(conn_.get(), name); !s.ok()) return s;
  }
  if (auto it = buckets_.find(name); it != buckets_.end()) return it->second;

  KvStreamRequest req;
  req.bucket = name;
  if (options.history != 0) req.history = options.history;
  if (options.replicas != 0) req.replicas = options.replicas;
  if (options.memory_storage) req.memory_storage = true;
  if (options.max_age.count() > 0) req.max_age = options.max_age;
  if (options.max_value_size != 0) req.max_value_size = static_cast<int32_t>(options.max_value_size);
  if (options.limit_marker_ttl.count() != 0) req.limit_marker_ttl = options.limit_marker_ttl;
  req.max_age_if_created = max_age_if_created;
  req.limit_marker_ttl_if_created = markers_if_created;
  req.create_if_missing = options.create_if_missing;
  req.allow_atomic_batches = options.allow_atomic_batches;
  auto stream = BindKvStream(conn_->js(), req, conn_.get());
  if (!stream.ok()) return stream.status();

  BucketOptions local_options;
  local_options.history = stream->history;
  local_options.max_value_size =
      stream->max_value_size > 0 ? static_cast<uint32_t>(stream->max_value_size) : kDefaultMaxValueSize;
  auto opened = local_->OpenBucket(name, local_options);
  if (!opened.ok()) return opened.status();
  // A local bucket is both a Bucket (the replica's reads) and the sink the
  // apply loop writes through.
  std::shared_ptr<Bucket> replica = *opened;
  auto sink = std::dynamic_pointer_cast<engine::ReplicaSink>(replica);
  if (!sink) {
    return Status::InvalidArgument("the local bucket '" + name + "' cannot hold a replica");
  }

  // Identity: a replica mirrors one incarnation of the stream. If the bucket
  // was deleted and recreated, or the stream is behind the replica, merging
  // would mix two histories: resync from scratch instead.
  auto source = sink->ReplicaSource();
  if (!source.ok()) return source.status();
  const uint64_t applied = replica->LastRevision();
  const bool recreated = *source != 0 && *source != stream->created_ns;
  const bool behind = stream->last_sequence < applied;
  if (recreated || behind || *source == 0) {
    if (recreated || behind) {
      log_.Warning("the replica of bucket '" + name + "' is stale (" +
                   (recreated ? "the bucket was deleted and recreated"
                              : "the stream is behind the replica") +
                   "); resyncing from the server");
    }
    if (Status s = sink->ResetReplica(stream->created_ns); !s.ok()) return s;
  }
  // A new replica loads a snapshot where the server can send one; the
  // consumer then starts after it (or after what part of it was loaded).
  if (replica->LastRevision() == 0) {
    auto boot = BootstrapFromSnapshot(*conn_, *stream, name, sink.get(), options.bootstrap_progress,
                                      log_);
    if (!boot.ok()) return boot.status();
  }
  auto loop = ApplyLoop::Start(conn_->js(), name, sink, conn_.get(), log_, &local_->stats());
  if (!loop.ok()) return loop.status();
  auto bucket = std::make_shared<ReplicatedBucket>(conn_, replica, sink, std::move(*loop), *stream,
                                                   locks_bucket_, &local_->stats());
  buckets_.emplace(name, bucket);
  return bucket;
}

Result<std::shared_ptr<engine::LockManager>> ReplicatedEngine::Locks(
    std::chrono::milliseconds lease, const std::string& bucket_name) {
  const std::string& name = bucket_name.empty() ? locks_bucket_ : bucket_name;
  std::lock_guard<std::mutex> lock(mu_);
  Locking& locking = locks_[name];
  if (!locking.manager) {
    // Created with limit markers where the server has them: lock records
    // then carry a TTL of a few leases, so an abandoned lock disappears on
    // the server and its marker wakes the waiters. Only the engine's own
    // locks bucket gets locks_max_age; another bucket is a data bucket.
    auto bucket = OpenReplicatedLocked(
        name, {}, name == locks_bucket_ ? std::chrono::nanoseconds(locks_max_age_)
                                        : std::chrono::nanoseconds(0),
        kLocksMarkerTtl);
    if (!bucket.ok()) {
      locks_.erase(name);
      return bucket.status();
    }
    // (A TTL on a record's Update needs history 1: see engine/expiry.h.)
    const bool record_ttl = (*bucket)->allow_msg_ttl() && (*bucket)->history() == 1 &&
                            conn_->Require(Feature::kMessageTtl, "").ok();
    // Waiters in other processes cannot be handed a lock: after a few
    // hand-offs inside this process, a release is a real one, so that they
    // get their turn.
    locking.manager = engine::LockManager::Create(*bucket, (*bucket)->replica(), (*bucket)->sink(),
                                                  kMaxLockHandOffs, record_ttl, &local_->stats());
    // A fenced compare-and-swap rewrites its lock's record: for a holder of
    // this engine, that is a renewal.
    std::weak_ptr<engine::LockManager> manager = locking.manager;
    (*bucket)->SetRewriteObserver([manager](const std::string& lock, uint64_t token,
                                            uint64_t revision,
                                            std::chrono::steady_clock::time_point sent) {
      if (auto m = manager.lock()) m->NoteRecordRewritten(lock, token, revision, sent);
    });
    locking.max_age = (*bucket)->max_age();
  }
  if (locking.max_age.count() > 0 && lease >= locking.max_age) {
    return Status::InvalidArgument(
        "lease of " + std::to_string(lease.count()) + " ms is not shorter than the max_age of " +
        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(locking.max_age).count()) +
        " s of locks bucket '" + name + "', which would expire the record of a held lock; "
        "give a shorter lease");
  }
  return locking.manager;
}

Result<std::unique_ptr<Lock>> ReplicatedEngine::Acquire(std::string_view name,
                                                        std::chrono::milliseconds lease,
                                                        std::chrono::milliseconds timeout,
                                                        const LockOptions& options) {
  auto locks = Locks(lease, options.locks_bucket);
  if (!locks.ok()) return locks.status();
  return (*locks)->Acquire(name, lease, timeout, options);
}

Result<std::unique_ptr<Lock>> ReplicatedEngine::TryAcquire(std::string_view name,
                                                           std::chrono::milliseconds lease,
                                                           const LockOptions& options) {
  auto locks = Locks(lease, options.locks_bucket);
  if (!locks.ok()) return locks.status();
  return (*locks)->Acquire(name, lease, std::nullopt, options);
}

Result<std::string> ReplicatedEngine::ServerVersion() {
  // Server() keeps what it read until a reconnect: ask whether there is a
  // connection first.
  if (!conn_->connected()) {
    return Status::Unavailable("not connected to a NATS server now, so its version is not "
                               "known; retry once the connection is back");
  }
  auto server = conn_->Server();
  if (!server.ok()) return server.status();
  return server->version_text;
}

Statistics ReplicatedEngine::GetStatistics() {
  return local_->stats().Snapshot(conn_->reconnects());
}

}  // namespace replication
}  // namespace revkv
