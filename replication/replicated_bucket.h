// ReplicatedBucket: a bucket mirrored to and from a JetStream KV bucket.
// Reads and watches come from the local replica; writes go to the server
// through KvWriter, which waits for the replica to apply them.

#ifndef REVKV_REPLICATION_REPLICATED_BUCKET_H_
#define REVKV_REPLICATION_REPLICATED_BUCKET_H_

#include <memory>
#include <string>

#include "engine/key_gate.h"
#include "engine/update_with_retry.h"
#include "engine/replica_sink.h"
#include "engine/expiry.h"
#include "engine/stats.h"
#include "replication/apply_loop.h"
#include "replication/async_writer.h"
#include "replication/kv_stream.h"
#include "replication/kv_writer.h"
#include "replication/nats_connection.h"
#include "revkv/bucket.h"

namespace revkv::replication {

class ReplicatedBucket final : public Bucket {
 public:
  // `stream`: the bound stream's settings. With more than one replica, CAS,
  // Create and UpdateWithRetry need a server that arbitrates them correctly
  // (Feature::kClusteredCas), checked against the server the connection is
  // on at each write. The replica's reads expire entries by the stream's
  // max_age and the messages' TTLs, with the connection's max_clock_skew.
  ReplicatedBucket(std::shared_ptr<NatsConnection> conn,
                   std::shared_ptr<Bucket> replica, std::shared_ptr<engine::ReplicaSink> sink,
                   std::unique_ptr<ApplyLoop> loop,
                   const KvStream& stream, std::string locks_bucket, engine::Stats* stats);
  ~ReplicatedBucket() override;

  const std::string& name() const override { return replica_->name(); }
  int history() const override { return replica_->history(); }
  uint32_t max_value_size() const override { return replica_->max_value_size(); }

  Result<std::string> Get(std::string_view key) override { return replica_->Get(key); }
  Result<Entry> GetEntry(std::string_view key) override { return replica_->GetEntry(key); }
  Result<uint64_t> Put(std::string_view key, std::string_view value,
                       const WriteOptions& options = {}) override;
  Result<uint64_t> Create(std::string_view key, std::string_view value,
                          const WriteOptions& options = {}) override;
  Result<uint64_t> Update(std::string_view key, std::string_view value, uint64_t expected_revision,
                          const WriteOptions& options = {}) override;
  Result<uint64_t> Delete(std::string_view key,
                          std::optional<uint64_t> expected_revision = std::nullopt,
                          const WriteOptions& options = {}) override;
  Result<uint64_t> Purge(std::string_view key,
                         std::optional<uint64_t> expected_revision = std::nullopt,
                         const WriteOptions& options = {}) override;
  // One atomic batch (nats-server 2.12+); see revkv/bucket.h.
  Result<TxnResult> Commit(const Txn& txn, const WriteOptions& options = {}) override;
  // Pipelined through AsyncWriter; fenced writes and transactions on its
  // worker threads. See revkv/bucket.h.
  std::future<Result<uint64_t>> PutAsync(std::string_view key, std::string_view value,
                                         const WriteOptions& options = {}) override;
  std::future<Result<uint64_t>> CreateAsync(std::string_view key, std::string_view value,
                                            const WriteOptions& options = {}) override;
  std::future<Result<uint64_t>> UpdateAsync(std::string_view key, std::string_view value,
                                            uint64_t expected_revision,
                                            const WriteOptions& options = {}) override;
  std::future<Result<uint64_t>> DeleteAsync(
      std::string_view key, std::optional<uint64_t> expected_revision = std::nullopt,
      const WriteOptions& options = {}) override;
  std::future<Result<uint64_t>> PurgeAsync(
      std::string_view key, std::optional<uint64_t> expected_revision = std::nullopt,
      const WriteOptions& options = {}) override;
  std::future<Result<TxnResult>> CommitAsync(const Txn& txn,
                                             const WriteOptions& options = {}) override;
  // Completes every asynchronous write in flight and takes no more (the
  // engine calls it as it is destroyed).
  void ShutdownWrites() { async_->Shutdown(); }
  Result<EntriesSnapshot> Entries(std::string_view filter = ">") override {
    return replica_->Entries(filter);
  }
  Result<KeysSnapshot> GetMany(const std::vector<std::string>& keys) override {
    return replica_->GetMany(keys);
  }
  Result<std::vector<std::string>> Keys(std::string_view filter = ">") override {
    return replica_->Keys(filter);
  }
  Result<std::vector<std::string>> KeysAfter(std::string_view filter, std::string_view after,
                                             size_t limit) override {
    return replica_->KeysAfter(filter, after, limit);
  }
  Result<std::vector<Entry>> History(std::string_view key) override {
    return replica_->History(key);
  }
  Result<std::vector<Entry>> ChangesSince(uint64_t after_revision, size_t limit) override {
    return replica_->ChangesSince(after_revision, limit);
  }
  uint64_t LastRevision() override { return replica_->LastRevision(); }
  Result<UpdateOutcome> UpdateWithRetry(std::string_view key, const Mutator& mutate,
                                        const RetryPolicy& policy = {},
                                        const WriteOptions& options = {}) override;
  Result<ManyUpdateOutcome> UpdateManyWithRetry(const std::vector<std::string>& keys,
                                                const ManyMutator& mutate,
                                                const RetryPolicy& policy = {},
                                                const WriteOptions& options = {}) override;
  Result<std::unique_ptr<Watcher>> Watch(std::string_view filter,
                                         const WatchOptions& options = {}) override {
    return replica_->Watch(filter, options);
  }
  Result<std::unique_ptr<Watcher>> Watch(std::string_view filter, const WatchOptions& options,
                                         WatchCallback callback) override {
    return replica_->Watch(filter, options, std::move(callback));
  }
  Status Sync(std::chrono::milliseconds timeout) override;
  BucketStatus GetStatus() override;

  // See KvWriter::SetRewriteObserver: the lock manager whose records live
  // in this bucket hears of the fenced writes that rewrote them.
  void SetRewriteObserver(KvWriter::RewriteObserver observer) {
    writer_->SetRewriteObserver(std::move(observer));
  }
  // The replica, read as a Bucket and written through its sink (by the
  // apply loop), whose commits show every change.
  const std::shared_ptr<Bucket>& replica() const { return replica_; }
  const std::shared_ptr<engine::ReplicaSink>& sink() const { return sink_; }
  // The stream's max_age when the bucket was bound (0: none).
  std::chrono::nanoseconds max_age() const { return max_age_; }
  // Whether the stream allows per-key TTL (Nats-TTL).
  bool allow_msg_ttl() const { return allow_msg_ttl_; }
  // The stream's limit marker TTL (0: no markers).
  std::chrono::nanoseconds limit_marker_ttl() const { return limit_marker_ttl_; }

 private:
  Status CheckWrite(const WriteOptions& options, bool cas, engine::TtlWrite write) const;

  // Declared in destruction order's reverse: the writer and the loop go
  // before the replica and the connection they use.
  // What UpdateWithRetry and UpdateManyWithRetry do after a conflict: wait
  // for the replica to apply the winner (of `key`, when one key is updated).
  engine::CatchUp ConflictCatchUp(std::optional<std::string> key);

  const std::shared_ptr<NatsConnection> conn_;
  const std::shared_ptr<Bucket> replica_;
  const std::shared_ptr<engine::ReplicaSink> sink_;
  const std::unique_ptr<ApplyLoop> loop_;
  const std::unique_ptr<KvWriter> writer_;
  const int replicas_;
  const std::chrono::nanoseconds max_age_;
  const bool allow_msg_ttl_;
  const std::string locks_bucket_;  // the engine's (Options::locks_bucket)
  const std::chrono::nanoseconds limit_marker_ttl_;
  engine::KeyGate update_gate_;
  engine::Stats* const stats_;  // the engine's, which outlives the bucket
  // Last, so that it goes first: its threads use the writer and the loop.
  const std::unique_ptr<AsyncWriter> async_;
};

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_REPLICATED_BUCKET_H_
