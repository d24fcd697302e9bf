// AsyncWriter: the pipelined writes of a replicated bucket (Bucket::PutAsync
// and the others).
//
// A write goes out at once as one message on the bucket's subject, with its
// expectation headers and a reply subject of this writer's own inbox; the
// caller gets a future. One thread reads the acknowledgements from that
// inbox, in whatever order they come, and completes each future exactly:
//  - acknowledged: once the replica has applied the revision (the apply
//    loop tells the writer after each batch: OnApplied), or at the write's
//    deadline with the revision all the same;
//  - refused: Conflict (10071, naming the current revision) or
//    ConflictRevisionUnknown (10164); a Create's refusal goes on to the
//    synchronous rounds, on the writer's own threads;
//  - no answer by the deadline: Timeout, the outcome unknown (or
//    PermissionDenied, when the server denied the publish).
// A publish no leader took (no responders, 10163, 10167) stored nothing and
// goes out again after a pause, until the deadline.
//
// At most `max_in_flight` writes are in flight: a caller beyond it waits.
// Shutdown() (and the destructor) waits for every write in flight to
// complete, which its deadline bounds.
//
// Writes that take several dependent round trips (fenced writes,
// transactions) run synchronously on the writer's two worker threads
// (Run), which are in flight alongside the pipelined ones.

#ifndef REVKV_REPLICATION_ASYNC_WRITER_H_
#define REVKV_REPLICATION_ASYNC_WRITER_H_

#include <nats/nats.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "replication/apply_loop.h"
#include "engine/stats.h"
#include "replication/kv_writer.h"
#include "replication/nats_connection.h"
#include "revkv/bucket.h"

namespace revkv::replication {

class AsyncWriter {
 public:
  using Clock = std::chrono::steady_clock;

  // One pipelined write.
  struct Request {
    Operation op = Operation::kPut;
    std::string key;
    std::string value;
    // A compare-and-swap: stored only if the key's last message is
    // `expected` (0: the server holds none).
    std::optional<uint64_t> expected;
    std::chrono::seconds ttl{0};
    std::string msg_id;  // Nats-Msg-Id (may be empty)
    std::chrono::milliseconds timeout{0};  // 0: the writer's write timeout
    // Where a refused compare-and-swap goes on, on the worker threads (a
    // Create's further rounds); empty: the refusal is the outcome.
    std::function<Result<uint64_t>()> on_conflict;
  };

  // `conn`, `writer` and `loop` must outlive the AsyncWriter.
  // `stats` (may be null) counts each write when its future completes.
  AsyncWriter(const NatsConnection* conn, KvWriter* writer, ApplyLoop* loop,
              std::shared_ptr<Bucket> replica, std::string bucket, size_t max_in_flight,
              engine::Stats* stats = nullptr);
  ~AsyncWriter();
  AsyncWriter(const AsyncWriter&) = delete;
  AsyncWriter& operator=(const AsyncWriter&) = delete;

  // Sends `request` (key and value checked first); see the top of the file.
  std::future<Result<uint64_t>> Publish(Request request);

  // Runs `fn` on a worker thread. After Shutdown, Unavailable at once.
  template <class T>
  std::future<Result<T>> Run(std::function<Result<T>()> fn) {
    auto done = std::make_shared<std::promise<Result<T>>>();
    auto future = done->get_future();
    if (!Enqueue([done, fn = std::move(fn)] { done->set_value(fn()); })) {
      done->set_value(Closed());
    }
    return future;
  }

  // Tells the writer that the replica applied more (the apply loop calls it).
  void OnApplied();

  // Refuses new writes, then waits until every write in flight completed.
  void Shutdown();

 private:
  enum class State { kSent, kResend, kAcked };
  struct Op {
    Request request;
    std::promise<Result<uint64_t>> done;
    Clock::time_point deadline;
    State state = State::kSent;
    uint64_t revision = 0;  // kAcked
    std::chrono::milliseconds pause{10};  // before the next resend
    uint64_t denials_before = 0;
    int64_t sent_ns = 0;  // wall clock of the last send
    Clock::time_point started;  // when Publish was called
  };
  struct Due {
    Clock::time_point at;
    uint64_t id;
    bool operator>(const Due& o) const { return at > o.at; }
  };

  Status Closed() const;
  // Counts a write of `request` that ended with `status` (engine::Stats).
  void Record(const Request& request, const Status& status, Clock::time_point started) const;
  Status StartLocked();
  // Builds and sends op `id`'s message with reply subject inbox_.<id>.
  natsStatus SendLocked(uint64_t id, Op& op);
  void ReadLoop();
  // Handles one reply; an acknowledged write's entry is appended to `own`,
  // for ApplyLoop::OfferOwnWrites once mu_ is released.
  void HandleReply(natsMsg* msg, std::vector<Entry>* own);
  // Completes the op and frees its slot.
  void FinishLocked(uint64_t id, Result<uint64_t> result);
  void AckedLocked(uint64_t id, uint64_t revision, bool duplicate, std::vector<Entry>* own);
  void HandleDueLocked(Clock::time_point now);
  bool Enqueue(std::function<void()> job);
  void WorkLoop();

  const NatsConnection* const conn_;
  KvWriter* const writer_;
  ApplyLoop* const loop_;
  const std::shared_ptr<Bucket> replica_;
  const std::string bucket_;
  const size_t max_in_flight_;
  engine::Stats* const stats_;

  std::mutex mu_;
  std::condition_variable room_;  // a slot freed, or everything completed
  bool started_ = false;
  bool stopping_ = false;
  std::string inbox_;  // "_INBOX.<nuid>": replies come to inbox_.<id>
  natsSubscription* sub_ = nullptr;
  std::thread reader_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Op> ops_;                  // in flight, by id
  std::multimap<uint64_t, uint64_t> awaiting_apply_;      // revision -> id
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due_;  // deadlines, resends

  // The worker threads of Run.
  std::mutex work_mu_;
  std::condition_variable work_cv_;
  std::deque<std::function<void()>> jobs_;
  bool work_stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_ASYNC_WRITER_H_
