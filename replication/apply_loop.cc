#include "replication/apply_loop.h"

#include <algorithm>
#include <cstdio>

#include "engine/expiry.h"
#include "replication/kv_stream.h"
#include "replication/nats_connection.h"
#include "replication/nats_status.h"
#include "replication/nats_ttl.h"

namespace revkv::replication {
namespace {
// Largest WriteBatch of applied entries; a catch-up flushes at this size.
constexpr size_t kMaxBatch = 512;
// The ordered consumer's idle heartbeat interval.
constexpr std::chrono::milliseconds kConsumerHeartbeat{1000};
// How long a batch may wait for messages the consumer said were pending.
constexpr std::chrono::milliseconds kMaxBatchDelay{2};
// How long an atomic batch may wait for its commit message, which the
// server may have removed since (history limits, max_age).
constexpr std::chrono::milliseconds kMaxOpenBatch{1000};
// The limits of a catch-up held after a gap (see GapHold):
// past them the replica applies what it has rather than fall further
// behind or hold more in memory.
constexpr std::chrono::milliseconds kMaxGapHold{5000};
constexpr size_t kMaxGapHeld = 1 << 16;
// A held catch-up also ends when no message came for this long: the
// message at its bound (or the one the pending count named) may have been
// removed since (a history-1 key rewritten, say), and never come. A
// consumer that still has messages delivers them far faster than this.
constexpr std::chrono::milliseconds kGapQuiet{100};

// The header in which nats-server (2.11+) names why it wrote a limit marker.
constexpr char kMarkerReason[] = "Nats-Marker-Reason";

// A limit marker is never a value. MaxAge and Purge drop the key's history
// (as a purge does), Remove deletes one message; a reason this version does
// not know is read as a Delete, the tombstone that keeps history.
Operation MarkerOperation(std::string_view reason) {
  if (reason == "MaxAge" || reason == "Purge") return Operation::kPurge;
  return Operation::kDelete;
}

// A header's value, as nats.go reads it: absent and empty are the same.
// NATS_OK with `*value` set, NATS_NOT_FOUND, or why the headers could not
// be read.
natsStatus Header(natsMsg* msg, const char* name, std::string_view* value) {
  const char* v = nullptr;
  natsStatus s = natsMsgHeader_Get(msg, name, &v);
  if (s == NATS_OK && (v == nullptr || *v == '\0')) return NATS_NOT_FOUND;
  if (s == NATS_OK) *value = v;
  return s;
}

}  // namespace

Result<StreamMessage> ReadStreamMessage(natsMsg* msg, std::string_view subject_prefix) {
  StreamMessage out;
  Entry& e = out.entry;
  jsMsgMetaData* meta = nullptr;
  natsStatus s = natsMsg_GetMetaData(&meta, msg);
  if (s == NATS_NO_MEMORY) return FromNats(s, "reading the metadata of a stream message");
  if (s != NATS_OK) {
    out.damage = std::string("its metadata (stream sequence and time) cannot be read: ") +
                 natsStatus_GetText(s);
    return out;
  }
  e.revision = meta->Sequence.Stream;
  e.created_ns = meta->Timestamp;
  out.pending = meta->NumPending;
  jsMsgMetaData_Destroy(meta);
  const char* subject = natsMsg_GetSubject(msg);
  return ReadStreamEntry(msg, subject != nullptr ? subject : "", subject_prefix, std::move(out));
}

Result<StreamMessage> ReadStreamEntry(natsMsg* msg, std::string_view subj,
                                      std::string_view subject_prefix, StreamMessage out) {
  Entry& e = out.entry;
  if (subj.substr(0, subject_prefix.size()) != subject_prefix) {
    out.damage = "its subject '" + std::string(subj) + "' is not under '" +
                 std::string(subject_prefix) + "'";
    return out;
  }
  e.key = std::string(subj.substr(subject_prefix.size()));

  std::string_view value;
  natsStatus s = Header(msg, "KV-Operation", &value);
  if (s == NATS_OK) {
    if (value == "DEL") {
      e.operation = Operation::kDelete;
    } else if (value == "PURGE") {
      e.operation = Operation::kPurge;
    }
  } else if (s == NATS_NOT_FOUND) {
    s = Header(msg, kMarkerReason, &value);
    if (s == NATS_OK) e.operation = MarkerOperation(value);
  }
  if (s != NATS_OK && s != NATS_NOT_FOUND) {
    if (s == NATS_NO_MEMORY) return FromNats(s, "reading the headers of a stream message");
    out.damage = std::string("its headers cannot be parsed (") + natsStatus_GetText(s) +
                 "), so whether it is a Put or a tombstone is unknown";
    return out;
  }
  if (e.operation == Operation::kPut) {
    const char* data = natsMsg_GetData(msg);
    int len = natsMsg_GetDataLength(msg);
    if (data != nullptr && len > 0) e.value.assign(data, static_cast<size_t>(len));
  }
  // The message's own TTL (a limit marker carries the marker TTL). The
  // server stored it, so it parsed there; a value this parser does not
  // take is read as no TTL: the server's removal still reaches the replica.
  if (Header(msg, kNatsTtlHeader, &value) == NATS_OK) {
    if (auto ttl = ParseNatsTtl(value); ttl.ok()) e.ttl_ns = *ttl;
  }
  // The server keeps an atomic batch's headers on the stored messages.
  if (Header(msg, "Nats-Batch-Id", &value) == NATS_OK) {
    out.batch_id.assign(value);
    out.batch_commit = Header(msg, "Nats-Batch-Commit", &value) == NATS_OK;
  }
  return out;
}

ApplyLoop::ApplyLoop(std::string bucket, std::shared_ptr<engine::ReplicaSink> replica,
                     engine::Log log)
    : bucket_(std::move(bucket)),
      prefix_(KvSubjectPrefix(bucket_)),
      replica_(std::move(replica)),
      log_(std::move(log)) {}

Result<std::unique_ptr<ApplyLoop>> ApplyLoop::Start(jsCtx* js, const std::string& bucket,
                                                    std::shared_ptr<engine::ReplicaSink> replica,
                                                    const NatsConnection* conn, engine::Log log,
                                                    engine::Stats* stats) {
  std::unique_ptr<ApplyLoop> loop(new ApplyLoop(bucket, std::move(replica), std::move(log)));
  loop->stats_ = stats;
  loop->js_ = js;
  loop->timer_ = std::thread(&ApplyLoop::FlushTimer, loop.get());
  // Own writes applied ahead of the consumer before a restart come again,
  // to take the server's time (ReplicaSink::ResumeRevision).
  const uint64_t applied = loop->replica_->ResumeRevision();
  const bool fresh = loop->replica_->LastRevision() == 0;
  {
    std::lock_guard<std::mutex> lock(loop->batch_mu_);
    loop->gap_ = GapHold(applied);
  }
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Ordered = true;
  // The server's idle heartbeats tell nats.c that the consumer is gone (its
  // node died, say); nats.c recreates it after two missed ones. Its default
  // of 5 s stalled replicas for 10-20 s after a node kill.
  so.Config.Heartbeat = std::chrono::nanoseconds(kConsumerHeartbeat).count();
  const std::string stream = KvStreamName(bucket);
  so.Stream = stream.c_str();
  if (fresh) {
    so.Config.DeliverPolicy = js_DeliverLastPerSubject;  // a new replica: latest state
  } else {
    so.Config.DeliverPolicy = js_DeliverByStartSequence;  // resume after what we have
    so.Config.OptStartSeq = applied + 1;
  }
  const std::string subject = loop->prefix_ + ">";
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string context = "subscribing to the stream of bucket '" + bucket + "'";
  const uint64_t since = conn != nullptr ? conn->permission_errors() : 0;
  natsStatus s = js_Subscribe(&loop->sub_, js, subject.c_str(), &ApplyLoop::OnMessage, loop.get(),
                              nullptr, &so, &jerr);
  if (s != NATS_OK) {
    if (conn == nullptr) return FromNats(s, context, jerr);
    return conn->FromRequest(s, context, jerr, since, "$JS.API.CONSUMER.CREATE." + stream);
  }
  // No limit on the messages nats.c queues for the loop. With one, a
  // replica slower than the stream for long enough would lose messages
  // silently: nats.c's ordered consumer counts a message as delivered before
  // it checks the limit, so a dropped message leaves no gap it would notice
  // and resubscribe for (nats.c 3.4.1's jsSub_checkOrderedMsg; nats.go fixed
  // the same, nats.go#2107). The consumer's flow control bounds the queue.
  s = natsSubscription_SetPendingLimits(loop->sub_, -1, -1);
  if (s != NATS_OK) return FromNats(s, "lifting the pending limits of bucket '" + bucket + "'");
  s = natsSubscription_SetOnCompleteCB(loop->sub_, &ApplyLoop::OnComplete, loop.get());
  if (s != NATS_OK) return FromNats(s, "watching the subscription of bucket '" + bucket + "'");
  // A server that refuses the deliver subject leaves the replica starved
  // without an error: ask it before reporting the loop started.
  if (conn != nullptr) {
    if (Status denied = conn->CheckSubscribed(loop->sub_, since, context); !denied.ok()) {
      return denied;
    }
  }
  return loop;
}

ApplyLoop::~ApplyLoop() {
  struct StopTimer {
    ApplyLoop* loop;
    ~StopTimer() {
      {
        std::lock_guard<std::mutex> lock(loop->batch_mu_);
        loop->stopping_ = true;
      }
      loop->batch_cv_.notify_all();
      if (loop->timer_.joinable()) loop->timer_.join();
    }
  } stop_timer{this};  // after the subscription below is gone
  if (sub_ == nullptr) return;
  // Unsubscribing deletes the ephemeral consumer with a request bounded by
  // the JetStream context's wait. Then wait for nats.c to report that no
  // message callback runs any more, since the callback uses `this`.
  natsSubscription_Unsubscribe(sub_);
  {
    std::unique_lock<std::mutex> lock(mu_);
    applied_cv_.wait_for(lock, std::chrono::seconds(10), [this] { return completed_; });
  }
  natsSubscription_Destroy(sub_);
}

void ApplyLoop::OnComplete(void* closure) {
  auto* loop = static_cast<ApplyLoop*>(closure);
  std::lock_guard<std::mutex> lock(loop->mu_);
  loop->completed_ = true;
  loop->applied_cv_.notify_all();
}

void ApplyLoop::OnMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  static_cast<ApplyLoop*>(closure)->Handle(msg);
}

void ApplyLoop::Handle(natsMsg* msg) {
  auto read = ReadStreamMessage(msg, prefix_);
  natsMsg_Destroy(msg);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++received_;
  }
  std::unique_lock<std::mutex> lock(batch_mu_);
  if (stopped_) return;  // see Stop: nothing after a failure is applied
  if (!read.ok()) {
    StopLocked(read.status());
    return;
  }
  // A gap's bound is read without batch_mu_, which writers offering their
  // own writes take. Seen asks NeedsBound again, so a release by the timer
  // in between does no harm.
  std::optional<uint64_t> bound;
  if (gap_.NeedsBound(read->entry.revision)) {
    lock.unlock();
    bound = StreamLastSequence();
    lock.lock();
    if (stopped_) return;
  }
  const uint64_t pending = read->pending;
  const bool was_holding = gap_.holding();
  gap_.Seen(read->entry.revision, pending, bound);
  if (gap_.holding() && !was_holding) hold_since_ = std::chrono::steady_clock::now();
  // A batch's messages are consecutive in the stream: a message of another
  // batch, or of none, means the open one's commit is gone.
  if (!open_batch_.empty() && read->batch_id != open_batch_) open_batch_.clear();
  if (!read->batch_id.empty() && !read->batch_commit && open_batch_.empty()) {
    open_batch_ = read->batch_id;
    open_since_ = std::chrono::steady_clock::now();
  }
  if (read->batch_commit) open_batch_.clear();
  if (!read->damage.empty()) {
    // Never applicable, whenever it is retried: skip it, with the batch.
    batch_skipped_.push_back({read->entry.revision, std::move(read->damage)});
    batch_last_ = std::max(batch_last_, read->entry.revision);
  } else {
    batch_last_ = read->entry.revision;
    batch_.push_back(std::move(read->entry));
  }
  if (gap_.holding() && (batch_.size() + batch_skipped_.size() >= kMaxGapHeld ||
                         std::chrono::steady_clock::now() >= hold_since_ + kMaxGapHold)) {
    gap_.Release();
  }
  // Batch while the server says more is pending; apply at once when idle.
  // An atomic batch is applied whole, at its commit message; a catch-up
  // across a gap, once caught up.
  const auto hold_due = [&] {
    return std::min(hold_since_ + kMaxGapHold, std::chrono::steady_clock::now() + kGapQuiet);
  };
  if (!open_batch_.empty()) {
    flush_due_ = open_since_ + kMaxOpenBatch;
    if (gap_.holding()) flush_due_ = std::max(flush_due_, hold_due());
    batch_cv_.notify_one();
  } else if (gap_.holding()) {
    flush_due_ = hold_due();
    batch_cv_.notify_one();
  } else if (pending == 0 || batch_.size() + batch_skipped_.size() >= kMaxBatch) {
    FlushLocked();
  } else if (batch_.size() + batch_skipped_.size() == 1 || read->batch_commit) {
    flush_due_ = std::chrono::steady_clock::now() + kMaxBatchDelay;
    batch_cv_.notify_one();
  }
}

bool ApplyLoop::OfferOwnWrites(std::vector<Entry> entries) {
  std::lock_guard<std::mutex> lock(batch_mu_);
  if (stopped_ || entries.empty()) return false;
  const uint64_t target = entries.back().revision;
  const uint64_t applied = replica_->LastRevision();
  own_.erase(own_.begin(), own_.upper_bound(applied));
  for (Entry& e : entries) {
    if (e.revision > applied) own_.insert_or_assign(e.revision, std::move(e));
  }
  if (own_.empty() || own_.begin()->first != applied + 1) return false;
  // The consumer may hold messages it was about to apply: they come first.
  if (!BatchEmptyLocked() && open_batch_.empty() && !gap_.holding()) {
    FlushLocked();  // applies the own writes that follow too
    return false;
  }
  const uint64_t last = ApplyOwnLocked();
  if (last == 0) return false;
  NotifyApplied();
  return last >= target;
}

uint64_t ApplyLoop::ApplyOwnLocked() {
  if (stopped_ || !open_batch_.empty() || gap_.holding()) return 0;
  const uint64_t applied = replica_->LastRevision();
  own_.erase(own_.begin(), own_.upper_bound(applied));
  std::vector<Entry> run;
  for (auto it = own_.begin(); it != own_.end() && it->first == applied + 1 + run.size();) {
    run.push_back(std::move(it->second));
    it = own_.erase(it);
  }
  if (run.empty()) return 0;
  if (Status s = replica_->ApplyOwnWrites(run); !s.ok()) {
    StopLocked(s);
    return 0;
  }
  own_applied_.fetch_add(run.size(), std::memory_order_relaxed);
  if (stats_ != nullptr) stats_->OwnWritesApplied(run.size());
  std::lock_guard<std::mutex> lock(mu_);
  applied_cv_.notify_all();
  return run.back().revision;
}

uint64_t ApplyLoop::own_writes_applied() const {
  return own_applied_.load(std::memory_order_relaxed);
}

void ApplyLoop::FlushLocked() {
  if (BatchEmptyLocked() || stopped_) return;
  std::vector<engine::ReplicaSink::SkippedMessage> skipped;
  Status s = replica_->ApplyCommitted(batch_, batch_last_, batch_skipped_, &skipped);
  if (s.ok() && stats_ != nullptr) {
    stats_->AppliedBatch(batch_.size());
    stats_->Skipped(skipped.size());
    const int64_t now_ns = engine::WallClockNs();
    for (const Entry& e : batch_) {
      if (e.created_ns > 0) stats_->ApplyLag(std::chrono::nanoseconds(now_ns - e.created_ns));
    }
  }
  batch_.clear();
  batch_skipped_.clear();
  if (!s.ok()) {
    StopLocked(s);
    return;
  }
  if (!skipped.empty()) WarnSkippedLocked(skipped);
  if (!own_.empty()) ApplyOwnLocked();
  {
    std::lock_guard<std::mutex> lock(mu_);
    applied_cv_.notify_all();
  }
  NotifyApplied();
}

void ApplyLoop::SetOnApplied(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(on_applied_mu_);
  on_applied_ = std::move(fn);
}

void ApplyLoop::NotifyApplied() {
  std::lock_guard<std::mutex> lock(on_applied_mu_);
  if (on_applied_) on_applied_();
}

void ApplyLoop::WarnSkippedLocked(const std::vector<engine::ReplicaSink::SkippedMessage>& skipped) {
  if (warned_skip_) return;
  warned_skip_ = true;
  const auto& first = skipped.front();
  log_.Warning("the replica of bucket '" + bucket_ + "' skipped revision " +
               std::to_string(first.revision) + ", which it can never apply: " + first.reason +
               "; the replica goes on past it. GetStatus() and 'revkv status' count the "
               "skipped messages (logged once while the bucket is open)");
}

void ApplyLoop::StopLocked(const Status& why) {
  // Only a message that can never be applied is skipped (see Handle and
  // LocalBucket::ApplyCommitted). A failure of the local store (a full disk,
  // a damaged record) may pass: applying past the message would lose it for
  // good, since the applied revision would move beyond it. So the loop stops
  // here, with the applied revision before it; reopening the bucket resumes
  // from there.
  stopped_ = true;
  batch_.clear();
  batch_skipped_.clear();
  own_.clear();
  log_.Error("the replica of bucket '" + bucket_ + "' stopped applying after revision " +
             std::to_string(replica_->LastRevision()) + ": " + why.ToString() +
             "; reopen the bucket to retry");
  std::lock_guard<std::mutex> lock(mu_);
  error_ = why;
  applied_cv_.notify_all();
}

void ApplyLoop::FlushTimer() {
  std::unique_lock<std::mutex> lock(batch_mu_);
  while (!stopping_) {
    if (BatchEmptyLocked()) {
      batch_cv_.wait(lock);
      continue;
    }
    if (std::chrono::steady_clock::now() >= flush_due_) {
      open_batch_.clear();  // its commit message never came
      gap_.Release();       // or the rest of the catch-up
      FlushLocked();
    } else {
      batch_cv_.wait_until(lock, flush_due_);
    }
  }
}

Status ApplyLoop::WaitApplied(uint64_t revision, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  while (replica_->LastRevision() < revision) {
    if (!error_.ok()) return error_;
    if (applied_cv_.wait_until(lock, deadline) == std::cv_status::timeout &&
        replica_->LastRevision() < revision) {
      return Status::Timeout("the replica of bucket '" + bucket_ + "' has applied revision " +
                             std::to_string(replica_->LastRevision()) + ", not yet " +
                             std::to_string(revision));
    }
  }
  return Status::OK();
}

Status ApplyLoop::CatchUpTo(uint64_t last, std::chrono::steady_clock::time_point deadline) {
  using Clock = std::chrono::steady_clock;
  // The usual case: the message at `last` exists and arrives shortly.
  Status s = WaitApplied(last, std::min(deadline, Clock::now() + std::chrono::milliseconds(20)));
  if (!s.IsTimeout()) return s;
  // Which message of the bucket is the newest that still exists? Sequences
  // only grow, so if it is below `last`, nothing between them can appear
  // any more.
  natsMsg* newest = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string stream = KvStreamName(bucket_);
  const std::string subjects = prefix_ + ">";
  natsStatus ns = js_GetLastMsg(&newest, js_, stream.c_str(), subjects.c_str(), nullptr, &jerr);
  uint64_t exists = 0;
  if (ns == NATS_OK) {
    exists = natsMsg_GetSequence(newest);
    natsMsg_Destroy(newest);
  } else if (jerr != JSNoMessageFoundErr) {
    return FromNats(ns, "reading the newest message of bucket '" + bucket_ + "'", jerr);
  }
  if (exists >= last) return WaitApplied(last, deadline);
  s = WaitApplied(exists, deadline);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> batch_lock(batch_mu_);
  if (stopped_) {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }
  if (applied() < last) {
    s = replica_->ApplyCommitted({}, last);
    if (!s.ok()) {
      StopLocked(s);
      return s;
    }
    if (!own_.empty()) ApplyOwnLocked();
    {
      std::lock_guard<std::mutex> lock(mu_);
      applied_cv_.notify_all();
    }
    NotifyApplied();
  }
  return s;
}

std::optional<uint64_t> ApplyLoop::StreamLastSequence() const {
  auto stream = ReadKvStream(js_, bucket_);
  if (!stream.ok()) return std::nullopt;
  return stream->last_sequence;
}

uint64_t ApplyLoop::messages_received() const {
  std::lock_guard<std::mutex> lock(mu_);
  return received_;
}

}  // namespace revkv::replication
