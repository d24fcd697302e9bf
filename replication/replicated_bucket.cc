#include "replication/replicated_bucket.h"

#include <algorithm>

#include "engine/txn_rules.h"
#include "engine/update_with_retry.h"
#include "replication/kv_stream.h"

namespace revkv::replication {

ReplicatedBucket::ReplicatedBucket(std::shared_ptr<NatsConnection> conn,
                                   std::shared_ptr<Bucket> replica,
                                   std::shared_ptr<engine::ReplicaSink> sink,
                                   std::unique_ptr<ApplyLoop> loop, const KvStream& stream,
                                   std::string locks_bucket, engine::Stats* stats)
    : conn_(std::move(conn)),
      replica_(std::move(replica)),
      sink_(std::move(sink)),
      loop_(std::move(loop)),
      writer_(std::make_unique<KvWriter>(conn_->js(), replica_->name(), loop_.get(), replica_,
                                         conn_->options().write_timeout, conn_.get())),
      replicas_(stream.replicas),
      max_age_(stream.max_age),
      allow_msg_ttl_(stream.allow_msg_ttl),
      locks_bucket_(std::move(locks_bucket)),
      limit_marker_ttl_(stream.limit_marker_ttl),
      stats_(stats),
      async_(std::make_unique<AsyncWriter>(conn_.get(), writer_.get(), loop_.get(), replica_,
                                           replica_->name(),
                                           conn_->options().max_writes_in_flight, stats)) {
  sink_->SetExpiry({max_age_.count(), std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             conn_->options().max_clock_skew)
                                             .count()});
}

ReplicatedBucket::~ReplicatedBucket() = default;

Status ReplicatedBucket::CheckWrite(const WriteOptions& options, bool cas,
                                    engine::TtlWrite write) const {
  if (options.fence) {
    const std::string& locks_bucket =
        options.fence->locks_bucket.empty() ? locks_bucket_ : options.fence->locks_bucket;
    if (name() != locks_bucket) {
      return Status::InvalidArgument(
          "a fence on replicated bucket '" + name() + "' needs its lock in the same bucket, and "
          "lock '" + options.fence->lock + "' lives in bucket '" + locks_bucket +
          "': the server checks a fence only within one stream; acquire the lock with "
          "LockOptions::locks_bucket = '" + name() + "' (name locks with a prefix such as "
          "'lock.'), or write with Update(revision)");
    }
    // A fenced CAS checks the lock and the key in one atomic batch.
    if (Status s = conn_->Require(
            cas ? Feature::kAtomicBatch : Feature::kSubjectSequenceFence,
            std::string(cas ? "a fenced compare-and-swap (Create, Update, UpdateWithRetry, or "
                              "Delete/Purge with an expected revision)"
                            : "a fenced write") +
                " to bucket '" + name() + "'");
        !s.ok()) {
      return s;
    }
  }
  if (options.timeout.count() < 0) {
    return Status::InvalidArgument("WriteOptions::timeout is negative; give 0 (the write "
                                   "timeout) or more");
  }
  if (Status s = engine::CheckIdempotencyKey(
          options, write == engine::TtlWrite::kPut && !cas && !options.fence);
      !s.ok()) {
    return s;
  }
  if (Status s = engine::CheckWriteTtl(name(), history(), write, options.ttl); !s.ok()) return s;
  if (options.ttl.count() > 0) {
    if (Status s = conn_->Require(Feature::kMessageTtl, "a write with a TTL to bucket '" + name() + "'");
        !s.ok()) {
      return s;
    }
    if (!allow_msg_ttl_) {
      return Status::InvalidArgument(
          "bucket '" + name() + "' does not allow per-key TTL: its stream was created without "
          "per-message TTL, which cannot be turned on safely from here; create the bucket with "
          "BucketOptions::limit_marker_ttl (or allow_msg_ttl on the stream)");
    }
    // From 2.11.2 the server raises a shorter TTL to the marker TTL when a
    // subject keeps more than one message, so that no marker is missed: the
    // entry would live far longer than asked.
    const auto marker = std::chrono::ceil<std::chrono::seconds>(limit_marker_ttl_);
    if (history() != 1 && marker.count() > 0 && options.ttl < marker &&
        conn_->Require(Feature::kTtlLimitMarkers, "").ok()) {
      return Status::InvalidArgument(
          "a TTL of " + std::to_string(options.ttl.count()) + " s on bucket '" + name() +
          "', which keeps " + std::to_string(history()) + " revisions per key and has limit "
          "markers of " + std::to_string(marker.count()) + " s: the server would raise it to " +
          std::to_string(marker.count()) + " s (so that no marker is missed); give a TTL of at "
          "least " + std::to_string(marker.count()) + " s, or use a bucket with history 1");
    }
  }
  if (cas && replicas_ > 1) {
    return conn_->Require(Feature::kClusteredCas, "bucket '" + name() + "' has " +
                                                      std::to_string(replicas_) + " replicas");
  }
  return Status::OK();
}

Result<uint64_t> ReplicatedBucket::Put(std::string_view key, std::string_view value,
                                       const WriteOptions& options) {
  return stats_->Time(engine::StatOp::kPut, [&]() -> Result<uint64_t> {
    if (Status s = CheckWrite(options, false, engine::TtlWrite::kPut); !s.ok()) return s;
    if (options.fence) {
      return writer_->FencedWrite(Operation::kPut, key, value, *options.fence, options.timeout,
                                  options.ttl);
    }
    return writer_->Put(key, value, options.timeout, options.ttl, options.idempotency_key);
  });
}

Result<uint64_t> ReplicatedBucket::Create(std::string_view key, std::string_view value,
                                          const WriteOptions& options) {
  return stats_->Time(engine::StatOp::kCreate, [&]() -> Result<uint64_t> {
    if (Status s = CheckWrite(options, true, engine::TtlWrite::kCreate); !s.ok()) return s;
    if (options.fence) {
      return writer_->FencedCreate(key, value, *options.fence, options.timeout, options.ttl);
    }
    return writer_->Create(key, value, options.timeout, options.ttl);
  });
}

Result<uint64_t> ReplicatedBucket::Update(std::string_view key, std::string_view value,
                                          uint64_t expected_revision,
                                          const WriteOptions& options) {
  return stats_->Time(engine::StatOp::kUpdate, [&]() -> Result<uint64_t> {
    if (Status s = CheckWrite(options, true, engine::TtlWrite::kUpdate); !s.ok()) return s;
    if (options.fence) {
      return writer_->FencedUpdate(Operation::kPut, key, value, expected_revision, *options.fence,
                                   options.timeout, options.ttl);
    }
    // A refusal names the subject's last sequence on the server: 0 when the
    // server holds no message for the key any more (max_age, a TTL or a
    // purge removed it), which the replica may not have applied yet. That
    // is Bucket::Update's Conflict at revision 0, "no entry": a lock's
    // takeover of an abandoned record then creates it afresh.
    return writer_->Update(key, value, expected_revision, options.timeout, options.ttl);
  });
}

Result<uint64_t> ReplicatedBucket::Delete(std::string_view key,
                                          std::optional<uint64_t> expected_revision,
                                          const WriteOptions& options) {
  return stats_->Time(engine::StatOp::kDelete, [&]() -> Result<uint64_t> {
    if (Status s = CheckWrite(options, expected_revision.has_value(), engine::TtlWrite::kDelete);
        !s.ok()) {
      return s;
    }
    if (options.fence && expected_revision) {
      return writer_->FencedUpdate(Operation::kDelete, key, {}, *expected_revision, *options.fence,
                                   options.timeout);
    }
    if (options.fence) {
      return writer_->FencedWrite(Operation::kDelete, key, {}, *options.fence, options.timeout);
    }
    return writer_->Delete(key, expected_revision, options.timeout);
  });
}

Result<uint64_t> ReplicatedBucket::Purge(std::string_view key,
                                         std::optional<uint64_t> expected_revision,
                                         const WriteOptions& options) {
  return stats_->Time(engine::StatOp::kPurge, [&]() -> Result<uint64_t> {
    if (Status s = CheckWrite(options, expected_revision.has_value(), engine::TtlWrite::kPurge);
        !s.ok()) {
      return s;
    }
    if (options.fence && expected_revision) {
      return writer_->FencedUpdate(Operation::kPurge, key, {}, *expected_revision, *options.fence,
                                   options.timeout, options.ttl);
    }
    if (options.fence) {
      return writer_->FencedWrite(Operation::kPurge, key, {}, *options.fence, options.timeout,
                                  options.ttl);
    }
    return writer_->Purge(key, expected_revision, options.timeout, options.ttl);
  });
}

std::future<Result<uint64_t>> ReplicatedBucket::PutAsync(std::string_view key,
                                                         std::string_view value,
                                                         const WriteOptions& options) {
  if (Status s = CheckWrite(options, false, engine::TtlWrite::kPut); !s.ok()) {
    return Ready(Result<uint64_t>(s));
  }
  if (options.fence) {
    return async_->Run<uint64_t>(
        [this, key = std::string(key), value = std::string(value), options] {
          return Put(key, value, options);
        });
  }
  return async_->Publish({Operation::kPut, std::string(key), std::string(value), std::nullopt,
                          options.ttl, options.idempotency_key, options.timeout, {}});
}

std::future<Result<uint64_t>> ReplicatedBucket::CreateAsync(std::string_view key,
                                                            std::string_view value,
                                                            const WriteOptions& options) {
  if (Status s = CheckWrite(options, true, engine::TtlWrite::kCreate); !s.ok()) {
    return Ready(Result<uint64_t>(s));
  }
  auto create = [this, key = std::string(key), value = std::string(value), options] {
    return Create(key, value, options);
  };
  if (options.fence) return async_->Run<uint64_t>(create);
  // The first round as Create's (KvWriter::CreateRounds): a CAS on the
  // tombstone the replica holds, else on "no message". A refusal goes on
  // with Create's further rounds.
  auto seen = replica_->GetEntry(key);
  const uint64_t tombstone =
      !seen.ok() && seen.status().IsNotFound() ? seen.status().revision() : 0;
  return async_->Publish({Operation::kPut, std::string(key), std::string(value), tombstone,
                          options.ttl, {}, options.timeout, create});
}

std::future<Result<uint64_t>> ReplicatedBucket::UpdateAsync(std::string_view key,
                                                            std::string_view value,
                                                            uint64_t expected_revision,
                                                            const WriteOptions& options) {
  if (Status s = CheckWrite(options, true, engine::TtlWrite::kUpdate); !s.ok()) {
    return Ready(Result<uint64_t>(s));
  }
  if (options.fence) {
    return async_->Run<uint64_t>(
        [this, key = std::string(key), value = std::string(value), expected_revision, options] {
          return Update(key, value, expected_revision, options);
        });
  }
  return async_->Publish({Operation::kPut, std::string(key), std::string(value),
                          expected_revision, options.ttl, {}, options.timeout, {}});
}

std::future<Result<uint64_t>> ReplicatedBucket::DeleteAsync(
    std::string_view key, std::optional<uint64_t> expected_revision, const WriteOptions& options) {
  if (Status s = CheckWrite(options, expected_revision.has_value(), engine::TtlWrite::kDelete);
      !s.ok()) {
    return Ready(Result<uint64_t>(s));
  }
  if (options.fence) {
    return async_->Run<uint64_t>([this, key = std::string(key), expected_revision, options] {
      return Delete(key, expected_revision, options);
    });
  }
  return async_->Publish({Operation::kDelete, std::string(key), {}, expected_revision,
                          std::chrono::seconds(0), {}, options.timeout, {}});
}

std::future<Result<uint64_t>> ReplicatedBucket::PurgeAsync(
    std::string_view key, std::optional<uint64_t> expected_revision, const WriteOptions& options) {
  if (Status s = CheckWrite(options, expected_revision.has_value(), engine::TtlWrite::kPurge);
      !s.ok()) {
    return Ready(Result<uint64_t>(s));
  }
  if (options.fence) {
    return async_->Run<uint64_t>([this, key = std::string(key), expected_revision, options] {
      return Purge(key, expected_revision, options);
    });
  }
  return async_->Publish({Operation::kPurge, std::string(key), {}, expected_revision, options.ttl,
                          {}, options.timeout, {}});
}

std::future<Result<TxnResult>> ReplicatedBucket::CommitAsync(const Txn& txn,
                                                             const WriteOptions& options) {
  return async_->Run<TxnResult>([this, txn, options] { return Commit(txn, options); });
}

engine::CatchUp ReplicatedBucket::ConflictCatchUp(std::optional<std::string> key) {
  // A conflict names the winner's revision; the replica may not have it yet,
  // and re-reading before it does would only conflict again. One that names
  // none (10164) asks the server for the key's revision first, or, for a
  // transaction of several keys, catches up with the whole stream.
  return [this, key = std::move(key)](std::optional<uint64_t> revision,
                                      std::chrono::steady_clock::time_point until) {
    const auto bound =
        std::min(until, std::chrono::steady_clock::now() + conn_->options().write_timeout);
    if (revision) {
      loop_->WaitApplied(*revision, bound).ok();
    } else if (key) {
      writer_->CatchUpKey(*key, bound).ok();
    } else {
      Sync(std::chrono::ceil<std::chrono::milliseconds>(bound - std::chrono::steady_clock::now()))
          .ok();
    }
  };
}

Result<UpdateOutcome> ReplicatedBucket::UpdateWithRetry(std::string_view key,
                                                        const Mutator& mutate,
                                                        const RetryPolicy& policy,
                                                        const WriteOptions& options) {
  if (Status s = CheckWrite(options, true, engine::TtlWrite::kUpdate); !s.ok()) return s;
  const auto catch_up = ConflictCatchUp(std::string(key));
  auto outcome = stats_->Time(engine::StatOp::kUpdateWithRetry, [&] {
    return engine::RunUpdateWithRetry(*this, update_gate_, key, mutate, policy, options, catch_up);
  });
  if (outcome.ok()) stats_->AddRetries(static_cast<uint64_t>(outcome->attempts - 1));
  return outcome;
}

Result<ManyUpdateOutcome> ReplicatedBucket::UpdateManyWithRetry(
    const std::vector<std::string>& keys, const ManyMutator& mutate, const RetryPolicy& policy,
    const WriteOptions& options) {
  const auto catch_up = ConflictCatchUp(std::nullopt);
  auto outcome = stats_->Time(engine::StatOp::kUpdateManyWithRetry, [&] {
    return engine::RunUpdateManyWithRetry(*this, update_gate_, keys, mutate, policy, options,
                                          /*check_kept=*/false, catch_up);
  });
  if (outcome.ok()) stats_->AddRetries(static_cast<uint64_t>(outcome->attempts - 1));
  return outcome;
}

Result<TxnResult> ReplicatedBucket::Commit(const Txn& txn, const WriteOptions& options) {
  return stats_->Time(engine::StatOp::kCommit, [&]() -> Result<TxnResult> {
    if (Status s = engine::CheckTxn(txn, name(), history(), max_value_size(), options.ttl);
        !s.ok()) {
      return s;
    }
    // The per-operation TTL rules are CheckTxn's; the rest as for a CAS.
    if (Status s = CheckWrite(options, true, engine::TtlWrite::kCreate); !s.ok()) return s;
    if (Status s = conn_->Require(Feature::kAtomicBatch,
                                  "a transaction on bucket '" + name() + "'");
        !s.ok()) {
      return s;
    }
    // A fence's lock record takes one message of the server's batch.
    if (options.fence && txn.ops.size() + 1 > kMaxTxnOps) {
      return Status::InvalidArgument(
          "a fenced transaction on bucket '" + name() + "' has " + std::to_string(txn.ops.size()) +
          " operations; at most " + std::to_string(kMaxTxnOps - 1) +
          " fit in one atomic batch with the lock's record; split it");
    }
    const auto deadline = std::chrono::steady_clock::now() +
                          (options.timeout.count() > 0 ? options.timeout
                                                       : conn_->options().write_timeout);
    // The replica's view of a key, confirmed with the server when it shows a
    // live entry (a stale replica must not turn a Create into Exists).
    auto current = [&](const std::string& key) -> Result<Entry> {
      auto e = replica_->GetEntry(key);
      if (e.ok()) {
        auto on_server = writer_->ServerRevision(key, deadline);
        if (!on_server.ok()) return on_server.status();
        if (*on_server != e->revision) {
          if (Status c = writer_->CatchUpKey(key, deadline); !c.ok()) return c;
          e = replica_->GetEntry(key);
        }
      }
      return e;
    };
    const auto ttl = options.ttl;
    std::vector<KvWriter::TxnMessage> messages;
    std::vector<size_t> carriers;  // messages without a check of their own
    for (const TxnOp& o : txn.ops) {
      KvWriter::TxnMessage m;
      m.op = engine::OperationOf(o);
      m.key = o.key;
      if (m.op == Operation::kPut) {
        m.value = o.value;
        m.ttl = ttl;
      }
      if (o.kind == TxnOp::Kind::kCreate) {
        // Absent or tombstoned: a CAS on "no message", or on the tombstone.
        auto e = current(o.key);
        if (e.ok()) {
          return Status::Exists("key '" + o.key + "' of bucket '" + name() + "' exists at " +
                                    "revision " + std::to_string(e->revision) +
                                    "; use Update with that revision to change it",
                                e->revision);
        }
        if (!e.status().IsNotFound()) return e.status();
        m.expected = e.status().revision();
      } else if (o.expected_revision) {
        m.expected = *o.expected_revision;
      } else {
        carriers.push_back(messages.size());
      }
      messages.push_back(std::move(m));
    }
    // A compare on a key the transaction does not write rides on a message
    // without a check of its own (the -Subject form; one check per message).
    size_t next_carrier = 0;
    for (const TxnCompare& c : txn.compares) {
      if (next_carrier == carriers.size()) {
        return Status::InvalidArgument(
            "a transaction on replicated bucket '" + name() + "' has " +
            std::to_string(txn.compares.size()) + " compares on keys it does not write, and " +
            std::to_string(carriers.size()) + " operations without a condition of their own (a "
            "Put, or a Delete or Purge without an expected revision): nats-server checks one "
            "condition per message of a batch, so each such compare needs one of those "
            "operations to carry it; drop compares or write those keys with Update(revision)");
      }
      uint64_t expected = c.revision;
      if (c.kind != TxnCompare::Kind::kRevision) {
        // Present and absent are checked as "the revision the replica shows".
        auto e = current(c.key);
        if (!e.ok() && !e.status().IsNotFound()) return e.status();
        const uint64_t rev = e.ok() ? e->revision : e.status().revision();
        if (e.ok() != (c.kind == TxnCompare::Kind::kPresent)) {
          return Status::Conflict("key '" + c.key + "' of bucket '" + name() + "' is " +
                                      (e.ok() ? "present at revision " + std::to_string(rev)
                                              : std::string("not present")) +
                                      "; re-read the key and retry",
                                  rev);
        }
        expected = rev;
      }
      KvWriter::TxnMessage& carrier = messages[carriers[next_carrier++]];
      carrier.expected = expected;
      carrier.check_key = c.key;
    }
    auto revisions = writer_->CommitBatch(
        messages, options.fence ? &*options.fence : nullptr,
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
    if (!revisions.ok()) return revisions.status();
    TxnResult out;
    out.revision = revisions->back();
    out.revisions = std::move(*revisions);
    return out;
  });
}

Status ReplicatedBucket::Sync(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto stream = ReadKvStream(conn_->js(), name(), conn_.get());
  if (!stream.ok()) return stream.status();
  return loop_->CatchUpTo(stream->last_sequence, deadline);
}

BucketStatus ReplicatedBucket::GetStatus() {
  BucketStatus out;
  out.replicated = true;
  out.allows_ttl = allow_msg_ttl_;
  out.limit_marker_ttl = limit_marker_ttl_;
  out.max_age = max_age_;
  out.applied = replica_->LastRevision();
  sink_->ReportSkips(&out);  // from the store: known even when the server is not
  auto stream = ReadKvStream(conn_->js(), name(), conn_.get());
  if (!stream.ok()) {
    if (!out.error.empty()) out.error += "; ";
    out.error += stream.status().ToString();
    return out;
  }
  out.connected = conn_->connected();
  if (auto server = conn_->Server(); server.ok()) out.server_version = server->version_text;
  out.stream_last = stream->last_sequence;
  // The replica may have applied more since `applied` was read.
  out.applied = std::max(out.applied, replica_->LastRevision());
  if (stream->last_sequence <= out.applied) {
    out.lag = 0;
    out.lag_time = std::chrono::nanoseconds(0);
    return out;
  }
  out.lag = stream->last_sequence - out.applied;
  // Server time between the last applied entry and the stream's last
  // message; unknown for an empty replica, or if the applied entry cannot be
  // read back.
  if (out.applied != 0) {
    auto applied_entry = replica_->ChangesSince(out.applied - 1, 1);
    if (applied_entry.ok() && !applied_entry->empty() &&
        applied_entry->front().revision == out.applied) {
      out.lag_time = std::chrono::nanoseconds(
          std::max<int64_t>(0, stream->last_time_ns - applied_entry->front().created_ns));
    }
  }
  return out;
}

}  // namespace revkv::replication
