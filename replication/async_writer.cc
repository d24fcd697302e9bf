#include "replication/async_writer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "engine/expiry.h"
#include "replication/jetstream_api.h"
#include "replication/nats_status.h"

namespace revkv::replication {
namespace {

constexpr int kWorkers = 2;
// The longest the reader waits for a reply before it looks at the deadlines.
constexpr std::chrono::milliseconds kMaxPoll{100};
// The most replies handled before their own writes are applied.
constexpr int kMaxRepliesAtOnce = 256;

// The sequence named in a "wrong last sequence: N" description.
uint64_t SequenceInDescription(const std::string& description) {
  const char* at = std::strstr(description.c_str(), "wrong last sequence: ");
  if (at == nullptr) return 0;
  return std::strtoull(at + std::strlen("wrong last sequence: "), nullptr, 10);
}

}  // namespace

AsyncWriter::AsyncWriter(const NatsConnection* conn, KvWriter* writer, ApplyLoop* loop,
                         std::shared_ptr<Bucket> replica, std::string bucket,
                         size_t max_in_flight, engine::Stats* stats)
    : conn_(conn),
      writer_(writer),
      loop_(loop),
      replica_(std::move(replica)),
      bucket_(std::move(bucket)),
      max_in_flight_(std::max<size_t>(1, max_in_flight)),
      stats_(stats) {
  // The apply loop reports each applied batch: acknowledged writes wait
  // for their revision there. (Registered here, not under mu_: the loop
  // calls it holding its own lock.)
  loop_->SetOnApplied([this] { OnApplied(); });
}

AsyncWriter::~AsyncWriter() { Shutdown(); }

void AsyncWriter::Record(const Request& r, const Status& status, Clock::time_point started) const {
  if (stats_ == nullptr) return;
  using engine::StatOp;
  const StatOp op = r.op == Operation::kDelete  ? StatOp::kDeleteAsync
                    : r.op == Operation::kPurge ? StatOp::kPurgeAsync
                    : r.on_conflict             ? StatOp::kCreateAsync
                    : r.expected                ? StatOp::kUpdateAsync
                                                : StatOp::kPutAsync;
  stats_->Record(op, status, Clock::now() - started);
}

Status AsyncWriter::Closed() const {
  return Status::Unavailable("bucket '" + bucket_ + "' is closing: its engine or bucket is being "
                             "destroyed, so it takes no more writes; nothing was written");
}

Status AsyncWriter::StartLocked() {
  if (started_) return Status::OK();
  natsInbox* inbox = nullptr;
  natsStatus s = natsInbox_Create(&inbox);
  if (s != NATS_OK) return FromNats(s, "creating the reply inbox of bucket '" + bucket_ + "'");
  inbox_ = inbox;
  natsInbox_Destroy(inbox);
  s = natsConnection_SubscribeSync(&sub_, conn_->nc(), (inbox_ + ".*").c_str());
  // Every reply is kept: the writer bounds how many can come.
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub_, -1, -1);
  if (s != NATS_OK) {
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
    return FromNats(s, "subscribing to the reply inbox of bucket '" + bucket_ + "'");
  }
  // No flush: the server reads this connection's SUB before any PUB sent
  // after it, so the replies have somewhere to go.
  reader_ = std::thread(&AsyncWriter::ReadLoop, this);
  started_ = true;
  return Status::OK();
}

std::future<Result<uint64_t>> AsyncWriter::Publish(Request request) {
  const Clock::time_point started = Clock::now();
  std::promise<Result<uint64_t>> early;
  auto fail = [&](Status s) {
    Record(request, s, started);
    early.set_value(std::move(s));
    return early.get_future();
  };
  if (Status s = writer_->CheckKeyAndValue(request.key, request.value); !s.ok()) return fail(s);
  // Conflict at once where the replica already proves the CAS stale.
  if (request.expected) {
    if (Status s = writer_->PreCheck(request.key, *request.expected); !s.ok()) {
      if (!request.on_conflict) return fail(s);
      // A Create of a key the replica shows live: Create's own rounds say
      // Exists, or find the tombstone that came since.
      return Run<uint64_t>([this, next = std::move(request.on_conflict), started] {
        Result<uint64_t> result = next();
        const Request create{Operation::kPut, {}, {}, 0, {}, {}, {},
                             []() -> Result<uint64_t> { return uint64_t{0}; }};
        Record(create, result.ok() ? Status::OK() : result.status(), started);
        return result;
      });
    }
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return fail(Closed());
  if (Status s = StartLocked(); !s.ok()) return fail(s);
  const auto timeout = writer_->Effective(request.timeout);
  const auto deadline = Clock::now() + timeout;
  // Backpressure: wait for a slot, within the write's own deadline.
  if (!room_.wait_until(lock, deadline,
                        [&] { return stopping_ || ops_.size() < max_in_flight_; })) {
    return fail(Status::Timeout("bucket '" + bucket_ + "' had " + std::to_string(max_in_flight_) +
                                " writes in flight for " + std::to_string(timeout.count()) +
                                " ms (NatsOptions::max_writes_in_flight); nothing was written"));
  }
  if (stopping_) return fail(Closed());
  const uint64_t id = next_id_++;
  Op& op = ops_[id];
  op.request = std::move(request);
  op.started = started;
  // The write's own time starts when it goes out, after any wait for room.
  op.deadline = Clock::now() + timeout;
  op.denials_before = conn_->permission_errors();
  auto future = op.done.get_future();
  due_.push({op.deadline, id});
  if (natsStatus s = SendLocked(id, op); s != NATS_OK) {
    // Sending failed (a closed connection, a full reconnect buffer): the
    // message did not leave this process.
    FinishLocked(id, FromNats(s, "writing key '" + ops_[id].request.key + "' of bucket '" +
                                     bucket_ + "'"));
  }
  return future;
}

natsStatus AsyncWriter::SendLocked(uint64_t id, Op& op) {
  const Request& r = op.request;
  natsMsg* msg = nullptr;
  const std::string reply = inbox_ + "." + std::to_string(id);
  natsStatus s = BuildKvMessage(&msg, writer_->subject_prefix() + r.key, r.op, r.value, r.ttl,
                                reply.c_str());
  if (s == NATS_OK && r.expected) {
    s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence",
                          std::to_string(*r.expected).c_str());
  }
  if (s == NATS_OK && !r.msg_id.empty()) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", r.msg_id.c_str());
  op.sent_ns = engine::WallClockNs();
  if (s == NATS_OK) s = natsConnection_PublishMsg(conn_->nc(), msg);
  natsMsg_Destroy(msg);
  return s;
}

void AsyncWriter::FinishLocked(uint64_t id, Result<uint64_t> result) {
  auto it = ops_.find(id);
  if (it == ops_.end()) return;
  Record(it->second.request, result.ok() ? Status::OK() : result.status(), it->second.started);
  it->second.done.set_value(std::move(result));
  ops_.erase(it);
  room_.notify_all();
}

void AsyncWriter::AckedLocked(uint64_t id, uint64_t revision, bool duplicate,
                              std::vector<Entry>* own) {
  Op& op = ops_[id];
  op.state = State::kAcked;
  op.revision = revision;
  if (replica_->LastRevision() >= revision && writer_->ReplicaRevision(op.request.key) >= revision) {
    FinishLocked(id, revision);
    return;
  }
  awaiting_apply_.emplace(revision, id);
  // As KvWriter's: applied ahead of the consumer when nothing comes before
  // it (a duplicate's stored message may differ: the consumer brings it).
  if (!duplicate) {
    const Request& r = op.request;
    const int64_t now_ns = engine::WallClockNs();
    own->push_back(OwnEntry(r.op, r.key, r.value, r.ttl, revision,
                            op.sent_ns + (now_ns - op.sent_ns) / 2));
  }
}

void AsyncWriter::OnApplied() {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t applied = replica_->LastRevision();
  // As KvWriter::WaitOwnWrite: applied, and the key shows it. One that the
  // replica passed without the message waits for the key's later one.
  for (auto it = awaiting_apply_.begin(); it != awaiting_apply_.end() && it->first <= applied;) {
    const auto [revision, id] = *it;
    auto op = ops_.find(id);
    if (op != ops_.end() && writer_->ReplicaRevision(op->second.request.key) < revision) {
      ++it;
      continue;
    }
    it = awaiting_apply_.erase(it);
    FinishLocked(id, revision);
  }
}

void AsyncWriter::HandleReply(natsMsg* msg, std::vector<Entry>* own) {
  const char* subject = natsMsg_GetSubject(msg);
  const uint64_t id = std::strtoull(subject + inbox_.size() + 1, nullptr, 10);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ops_.find(id);
  if (it == ops_.end() || it->second.state != State::kSent) return;  // late, or a repeat
  Op& op = it->second;
  const std::string& key = op.request.key;
  const std::string what = "writing key '" + key + "' of bucket '" + bucket_ + "'";
  auto resend_later = [&] {
    // Nothing was stored: go again after a pause, if the deadline allows.
    if (Clock::now() + op.pause * 2 >= op.deadline) return false;
    op.state = State::kResend;
    due_.push({Clock::now() + op.pause, id});
    op.pause = std::min(op.pause * 2, std::chrono::milliseconds(250));
    return true;
  };
  if (natsMsg_IsNoResponders(msg)) {
    if (!resend_later()) {
      FinishLocked(id, Status::Unavailable(what + ": no stream leader took the write (an "
                                           "election?) until the deadline; nothing was stored"));
    }
    return;
  }
  const std::string body(natsMsg_GetData(msg) != nullptr ? natsMsg_GetData(msg) : "",
                         static_cast<size_t>(natsMsg_GetDataLength(msg)));
  const std::optional<PubAckReply> ack = ParsePubAck(body);
  if (!ack || (!ack->is_error && !ack->seq)) {
    FinishLocked(id, Status::IOError(what + ": the server's acknowledgement is not one revkv "
                                     "understands: " + body));
    return;
  }
  if (!ack->is_error) {
    AckedLocked(id, *ack->seq, ack->duplicate, own);
    return;
  }
  const jsErrCode jerr = static_cast<jsErrCode>(ack->error_code);
  if (PublishNotStoredAndRetryable(NATS_ERR, jerr) && resend_later()) return;
  const bool conflict = jerr == JSStreamWrongLastSequenceErr ||
                        ack->error_code == kJsWrongLastSequenceInFlight;
  if (conflict && op.request.on_conflict) {
    // A Create whose first round the server refused: the synchronous
    // rounds go on from here, on a worker thread.
    auto next = std::move(op.request.on_conflict);
    auto done = std::make_shared<std::promise<Result<uint64_t>>>(std::move(op.done));
    Request counted{op.request.op, {}, {}, op.request.expected, {}, {}, {}, []() -> Result<uint64_t> {
                      return uint64_t{0};
                    }};  // counted as the Create it is
    const Clock::time_point started = op.started;
    ops_.erase(it);
    room_.notify_all();
    if (!Enqueue([this, done, next = std::move(next), counted, started] {
          Result<uint64_t> result = next();
          Record(counted, result.ok() ? Status::OK() : result.status(), started);
          done->set_value(std::move(result));
        })) {
      Record(counted, Closed(), started);
      done->set_value(Closed());
    }
    return;
  }
  if (jerr == JSStreamWrongLastSequenceErr) {
    FinishLocked(id, writer_->WrongRevision(key, op.request.expected.value_or(0),
                                            SequenceInDescription(ack->description)));
  } else if (ack->error_code == kJsWrongLastSequenceInFlight) {
    FinishLocked(id, writer_->InFlightConflict(key));
  } else {
    FinishLocked(id, FromNats(NATS_ERR, what + ": " + ack->description, jerr));
  }
}

void AsyncWriter::HandleDueLocked(Clock::time_point now) {
  while (!due_.empty() && due_.top().at <= now) {
    const uint64_t id = due_.top().id;
    due_.pop();
    auto it = ops_.find(id);
    if (it == ops_.end()) continue;  // completed already
    Op& op = it->second;
    if (op.state == State::kResend && now < op.deadline) {
      op.state = State::kSent;
      if (natsStatus s = SendLocked(id, op); s != NATS_OK) {
        FinishLocked(id, FromNats(s, "writing key '" + op.request.key + "' of bucket '" +
                                         bucket_ + "'"));
      }
      continue;
    }
    if (now < op.deadline) continue;  // a resend's entry, now past
    if (op.state == State::kAcked) {
      // Acknowledged, but the replica is slower than the write's timeout:
      // a success all the same, as for a synchronous write.
      for (auto a = awaiting_apply_.lower_bound(op.revision);
           a != awaiting_apply_.end() && a->first == op.revision; ++a) {
        if (a->second == id) {
          awaiting_apply_.erase(a);
          break;
        }
      }
      FinishLocked(id, op.revision);
      continue;
    }
    const std::string subject = writer_->subject_prefix() + op.request.key;
    const std::string what = "writing key '" + op.request.key + "' of bucket '" + bucket_ + "'";
    if (conn_->PermissionDeniedSince(op.denials_before, subject)) {
      FinishLocked(id, Status::PermissionDenied("the server denied publishing to '" + subject +
                                                "'; grant the user publish rights on bucket '" +
                                                bucket_ + "'"));
    } else if (op.state == State::kResend) {
      FinishLocked(id, Status::Unavailable(what + ": no stream leader took the write until the "
                                           "deadline; nothing was stored"));
    } else {
      FinishLocked(id, Status::Timeout(what + ": no acknowledgement within " +
                                       std::to_string(writer_->Effective(op.request.timeout).count()) +
                                       " ms; the write may or may not have been stored (Sync and "
                                       "re-read, or retry a Put with its idempotency key)"));
    }
  }
}

void AsyncWriter::ReadLoop() {
  while (true) {
    int64_t wait_ms = kMaxPoll.count();
    {
      std::lock_guard<std::mutex> lock(mu_);
      const auto now = Clock::now();
      HandleDueLocked(now);
      if (stopping_ && ops_.empty()) break;
      if (!due_.empty()) {
        wait_ms = std::clamp<int64_t>(
            std::chrono::ceil<std::chrono::milliseconds>(due_.top().at - now).count(), 1,
            kMaxPoll.count());
      }
    }
    natsMsg* msg = nullptr;
    if (natsSubscription_NextMsg(&msg, sub_, wait_ms) != NATS_OK) continue;
    // Every reply already queued, then their own writes in one apply.
    std::vector<Entry> own;
    for (int n = 0; msg != nullptr; ++n) {
      HandleReply(msg, &own);
      natsMsg_Destroy(msg);
      msg = nullptr;
      if (n + 1 < kMaxRepliesAtOnce) natsSubscription_NextMsg(&msg, sub_, 0);
    }
    if (!own.empty()) loop_->OfferOwnWrites(std::move(own));
  }
  std::lock_guard<std::mutex> lock(mu_);
  room_.notify_all();
}

bool AsyncWriter::Enqueue(std::function<void()> job) {
  std::lock_guard<std::mutex> lock(work_mu_);
  if (work_stop_) return false;
  if (workers_.empty()) {
    for (int i = 0; i < kWorkers; ++i) workers_.emplace_back(&AsyncWriter::WorkLoop, this);
  }
  jobs_.push_back(std::move(job));
  work_cv_.notify_one();
  return true;
}

void AsyncWriter::WorkLoop() {
  std::unique_lock<std::mutex> lock(work_mu_);
  while (true) {
    work_cv_.wait(lock, [this] { return work_stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and everything queued ran
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

void AsyncWriter::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    room_.notify_all();
  }
  // The reader completes every write in flight (each has a deadline), then
  // ends.
  if (reader_.joinable()) reader_.join();
  loop_->SetOnApplied(nullptr);
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(work_mu_);
    work_stop_ = true;
    work_cv_.notify_all();
    workers.swap(workers_);
  }
  // They run what was queued first.
  for (std::thread& t : workers) t.join();
  std::lock_guard<std::mutex> lock(mu_);
  if (sub_ != nullptr) {
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
  }
}

}  // namespace revkv::replication
