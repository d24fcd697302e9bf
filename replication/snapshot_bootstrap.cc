#include "replication/snapshot_bootstrap.h"

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>
#include <charconv>
#include <cstdio>
#include <string>
#include <vector>

#include "replication/apply_loop.h"
#include "replication/capabilities.h"
#include "replication/nats_connection.h"
#include "replication/nats_status.h"

namespace revkv::replication {
namespace {

// Messages per page. A page is one WriteBatch on the replica; the next one
// streams in while it is parsed, and it is written while the next one is
// parsed. On the 2-core development VM 2,048-4,096 bootstrapped 100k keys
// fastest; 8,192 and 32,768 were slower (less of the first page overlaps).
constexpr int kPageMessages = 4096;
// The most a page may carry; the server stops a page at this many bytes.
constexpr int kPageBytes = 8 << 20;

std::atomic<bool> g_snapshot_enabled{true};
std::atomic<int> g_page_messages{kPageMessages};

// A header's value, or empty when absent or unreadable.
std::string_view HeaderOf(natsMsg* msg, const char* name) {
  const char* v = nullptr;
  if (natsMsgHeader_Get(msg, name, &v) != NATS_OK || v == nullptr) return {};
  return v;
}

std::optional<uint64_t> ParseU64(std::string_view text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
// days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// Whether the headers of a direct-get reply are the stored message's
// headers followed intact by the server's own, which start with
// Nats-Stream. nats.c's parser looks for a key's colon past the end of its
// line, and lets an empty value run into the next line: a stored block that
// the consumer's reading refuses at its end (a last line without a colon,
// or without a value) would here swallow the server's first line, and read
// without a Nats-Stream header. Such a message is left to the consumer.
bool ServerHeadersIntact(natsMsg* msg, std::string_view stream) {
  return HeaderOf(msg, "Nats-Stream") == stream;
}

// One page of the snapshot: the direct-get messages before its EOB.
struct Page {
  std::vector<natsMsg*> msgs;
  bool end = false;  // nothing more (404 No Results, or EOB with none pending)
  ~Page() {
    for (natsMsg* m : msgs) natsMsg_Destroy(m);
  }
};

class SnapshotReader {
 public:
  SnapshotReader(const NatsConnection& conn, const KvStream& stream)
      : conn_(conn),
        api_subject_("$JS.API.DIRECT.GET." + stream.name),
        wait_ms_(std::max<int64_t>(1000, conn.options().write_timeout.count())) {}
  ~SnapshotReader() {
    if (sub_ != nullptr) {
      natsSubscription_Unsubscribe(sub_);
      natsSubscription_Destroy(sub_);
    }
    natsInbox_Destroy(inbox_);
  }

  Status Open() {
    natsStatus s = natsInbox_Create(&inbox_);
    if (s == NATS_OK) s = natsConnection_SubscribeSync(&sub_, conn_.nc(), inbox_);
    // Pages bound what is queued; a limit would drop messages silently.
    if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub_, -1, -1);
    if (s != NATS_OK) return FromNats(s, "subscribing to the snapshot's replies");
    return Status::OK();
  }

  // Asks for the page that starts at sequence `seq`.
  Status Request(uint64_t seq) {
    const std::string body = "{\"seq\":" + std::to_string(seq) +
                             ",\"batch\":" + std::to_string(g_page_messages.load()) +
                             ",\"max_bytes\":" + std::to_string(kPageBytes) + "}";
    natsStatus s = natsConnection_PublishRequest(conn_.nc(), api_subject_.c_str(), inbox_,
                                                 body.data(), static_cast<int>(body.size()));
    if (s != NATS_OK) return FromNats(s, "asking for the snapshot page at sequence " +
                                             std::to_string(seq));
    return Status::OK();
  }

  // Receives the page asked for last, up to its EOB.
  Status Receive(Page* page) {
    for (;;) {
      natsMsg* msg = nullptr;
      natsStatus s = natsSubscription_NextMsg(&msg, sub_, wait_ms_);
      if (s != NATS_OK) return FromNats(s, "waiting for a snapshot page");
      if (natsMsg_IsNoResponders(msg)) {
        natsMsg_Destroy(msg);
        return Status::Unavailable("no server answered the direct get of stream '" +
                                   api_subject_.substr(std::string("$JS.API.DIRECT.GET.").size()) +
                                   "'");
      }
      const std::string status(HeaderOf(msg, "Status"));
      if (status.empty()) {
        page->msgs.push_back(msg);
        continue;
      }
      const std::string description(HeaderOf(msg, "Description"));
      const std::string pending(HeaderOf(msg, "Nats-Num-Pending"));
      natsMsg_Destroy(msg);
      if (status == "204") {  // EOB
        page->end = pending == "0";
        return Status::OK();
      }
      if (status == "404") {  // nothing at or after the page's sequence
        page->end = true;
        return Status::OK();
      }
      return Status::Unavailable("the server answered a snapshot page with " + status + " " +
                                 description);
    }
  }

  int dropped() const {
    int64_t n = 0;
    natsSubscription_GetDropped(sub_, &n);
    return static_cast<int>(n);
  }

 private:
  const NatsConnection& conn_;
  const std::string api_subject_;
  const int64_t wait_ms_;
  char* inbox_ = nullptr;
  natsSubscription* sub_ = nullptr;
};

// Writes pages to the replica on a thread of its own, one at a time, while
// the caller parses the next one.
class PageWriter {
 public:
  struct Work {
    std::unique_ptr<engine::ReplicaSink::PreparedFill> page;
    uint64_t messages = 0;
    uint64_t revision = 0;  // the page's last sequence: the applied revision after it
  };
  struct Done {
    Status status;
    uint64_t revision = 0;
    uint64_t messages = 0;
  };

  explicit PageWriter(engine::ReplicaSink* replica) : replica_(replica) {}
  ~PageWriter() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // Hands a page over; the previous one must have been waited for.
  void Start(Work work) {
    if (!thread_.joinable()) {
      // Without a thread (none could be started), the page is written here.
      try {
        thread_ = std::thread(&PageWriter::Run, this);
        pthread_setname_np(thread_.native_handle(), "revkv-snapshot");
      } catch (const std::system_error&) {
        done_ = Write(work);
        return;
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    work_ = std::move(work);
    busy_ = true;
    cv_.notify_all();
  }

  // Waits until the page handed over last is written; what came of it.
  Done Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !busy_; });
    Done out = std::move(done_);
    done_ = Done{};
    return out;
  }

 private:
  Done Write(Work& work) {
    Done d;
    d.status = replica_->CommitSnapshotFill(std::move(work.page), work.revision);
    d.revision = work.revision;
    d.messages = work.messages;
    return d;
  }

  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return quit_ || busy_; });
      if (!busy_) return;  // quit_, nothing left
      Work work = std::move(work_);
      lock.unlock();
      Done d = Write(work);
      lock.lock();
      done_ = std::move(d);
      busy_ = false;
      cv_.notify_all();
    }
  }

  engine::ReplicaSink* const replica_;
  std::mutex mu_;
  std::condition_variable cv_;
  Work work_;          // GUARDED_BY(mu_)
  Done done_;          // GUARDED_BY(mu_)
  bool busy_ = false;  // GUARDED_BY(mu_): work_ is being written
  bool quit_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace

std::optional<int64_t> ParseRfc3339Nano(std::string_view t) {
  // 2006-01-02T15:04:05[.999999999](Z|±07:00)
  auto num = [&](size_t pos, size_t len) -> std::optional<int64_t> {
    if (pos + len > t.size()) return std::nullopt;
    int64_t v = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (t[i] < '0' || t[i] > '9') return std::nullopt;
      v = v * 10 + (t[i] - '0');
    }
    return v;
  };
  if (t.size() < 20 || t[4] != '-' || t[7] != '-' || (t[10] != 'T' && t[10] != 't') ||
      t[13] != ':' || t[16] != ':') {
    return std::nullopt;
  }
  auto y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2),
       s = num(17, 2);
  if (!y || !mo || !d || !h || !mi || !s || *mo < 1 || *mo > 12 || *d < 1 || *d > 31) {
    return std::nullopt;
  }
  size_t pos = 19;
  int64_t frac = 0;
  if (pos < t.size() && t[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
      if (digits < 9) {
        frac = frac * 10 + (t[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (; digits < 9; ++digits) frac *= 10;
  }
  int64_t offset_s = 0;
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
    ++pos;
  } else if (pos + 6 == t.size() && (t[pos] == '+' || t[pos] == '-') && t[pos + 3] == ':') {
    auto oh = num(pos + 1, 2), om = num(pos + 4, 2);
    if (!oh || !om) return std::nullopt;
    offset_s = (*oh * 3600 + *om * 60) * (t[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != t.size()) return std::nullopt;
  const int64_t days = DaysFromCivil(*y, static_cast<unsigned>(*mo), static_cast<unsigned>(*d));
  const int64_t secs = days * 86400 + *h * 3600 + *mi * 60 + *s - offset_s;
  return secs * 1000000000LL + frac;
}

void TEST_SetSnapshotBootstrap(bool enabled) { g_snapshot_enabled.store(enabled); }

void TEST_SetSnapshotPageMessages(int messages) {
  g_page_messages.store(messages > 0 ? messages : kPageMessages);
}

Result<BootstrapPath> BootstrapFromSnapshot(
    const NatsConnection& conn, const KvStream& stream, const std::string& bucket,
    engine::ReplicaSink* replica,
    const std::function<void(const BootstrapProgress&)>& progress, const engine::Log& log) {
  const uint64_t up_to = stream.last_sequence;
  if (!g_snapshot_enabled.load() || replica->LastRevision() != 0 || up_to == 0 ||
      stream.history != 1 || !stream.allow_direct ||
      !conn.Require(Feature::kBatchedDirectGet, "").ok()) {
    return BootstrapPath::kReplay;
  }
  const std::string prefix = KvSubjectPrefix(bucket);
  // Written pages, as the writer reports them.
  BootstrapProgress at;
  at.target = up_to;
  // Anything the server or the connection does wrong ends the snapshot
  // where it is: the consumer resumes after the last page written.
  auto stop = [&](const Status& why) -> Result<BootstrapPath> {
    log.Warning("the snapshot of bucket '" + bucket + "' stopped at revision " +
                std::to_string(at.revision) + " of " + std::to_string(up_to) + " (" +
                why.ToString() + "); the replica replays the rest of the stream");
    return BootstrapPath::kPartial;
  };

  SnapshotReader reader(conn, stream);
  if (Status s = reader.Open(); !s.ok()) return stop(s);
  if (Status s = reader.Request(1); !s.ok()) return stop(s);
  auto page = std::make_unique<Page>();
  if (Status s = reader.Receive(page.get()); !s.ok()) return stop(s);
  // The revision up to which pages are read (and handed to the writer).
  uint64_t read_up_to = 0;
  // Whether a page went on past `up_to`: then the server that sent it had
  // every message up to `up_to`.
  bool past_up_to = false;
  PageWriter writer(replica);
  // Waits for the page being written; a store failure is the caller's.
  auto written = [&]() -> Status {
    PageWriter::Done done = writer.Wait();
    if (!done.status.ok()) return done.status;
    if (done.revision > at.revision) {
      at.loaded += done.messages;
      at.revision = done.revision;
    }
    return Status::OK();
  };
  for (;;) {
    // The sequence the page ends at, from its last message's header.
    uint64_t page_last = 0;
    if (!page->msgs.empty()) {
      page_last = ParseU64(HeaderOf(page->msgs.back(), "Nats-Sequence")).value_or(0);
    }
    const bool last_page = page->end || page->msgs.empty() || page_last >= up_to || page_last == 0;
    // Pipelining: the server sends the next page while this one is parsed,
    // and this one is parsed while the previous one is written.
    Status next = Status::OK();  // a failed request: this page still applies
    if (!last_page) next = reader.Request(page_last + 1);
    std::vector<Entry> entries;
    std::vector<engine::ReplicaSink::SkippedMessage> skipped;
    entries.reserve(page->msgs.size());
    uint64_t applied = read_up_to;
    bool unreadable = false;
    for (natsMsg* msg : page->msgs) {
      // The server puts the stream metadata in headers; a message whose
      // headers cannot be read is left to the consumer, which reads its
      // sequence from the reply subject and skips it as the replay does.
      const auto seq = ParseU64(HeaderOf(msg, "Nats-Sequence"));
      const std::string_view subject = HeaderOf(msg, "Nats-Subject");
      if (!seq || subject.empty() || *seq <= applied || !ServerHeadersIntact(msg, stream.name)) {
        unreadable = true;
        break;
      }
      if (*seq > up_to) {  // written since the bootstrap began: the consumer's
        past_up_to = true;
        break;
      }
      // The pages read the whole stream (a filter would make the server
      // count what matches for every page); a message outside the bucket's
      // subjects is one the consumer would never deliver.
      if (subject.substr(0, prefix.size()) != prefix) {
        applied = *seq;
        continue;
      }
      StreamMessage in;
      in.entry.revision = *seq;
      in.entry.created_ns = ParseRfc3339Nano(HeaderOf(msg, "Nats-Time-Stamp")).value_or(0);
      auto read = ReadStreamEntry(msg, subject, prefix, std::move(in));
      if (!read.ok()) {  // out of memory
        if (Status s = written(); !s.ok()) return s;
        return read.status();
      }
      if (!read->damage.empty()) {
        skipped.push_back({*seq, std::move(read->damage)});
      } else {
        entries.push_back(std::move(read->entry));
      }
      applied = *seq;
    }
    page.reset();
    PageWriter::Work work;
    if (applied > read_up_to) {
      // Encoded here, while the writer commits the previous page.
      work.messages = entries.size() + skipped.size();
      work.page = replica->PrepareSnapshotFill(std::move(entries), std::move(skipped));
      work.revision = applied;
    }
    if (Status s = written(); !s.ok()) return s;
    if (progress && at.revision > 0) progress(at);
    if (work.page) {
      read_up_to = applied;
      writer.Start(std::move(work));
    }
    if (unreadable || !next.ok() || last_page) {
      if (Status s = written(); !s.ok()) return s;
      // Not a failure: the consumer names and skips the message (see
      // ReadStreamMessage), so nothing is logged here.
      if (unreadable) return BootstrapPath::kPartial;
      if (!next.ok()) return stop(next);
      break;
    }
    page = std::make_unique<Page>();
    Status received = reader.Receive(page.get());
    if (received.ok() && reader.dropped() != 0) {
      received = Status::Unavailable("the connection dropped messages of the snapshot");
    }
    if (!received.ok()) {
      if (Status s = written(); !s.ok()) return s;
      return stop(received);
    }
  }
  // Every message up to `up_to` that still exists is loaded when the last
  // page went past it: the ones missing were removed (or replaced after
  // `up_to`, which the consumer delivers). Otherwise the stream ended
  // before `up_to` as the answering server saw it. In a cluster any replica
  // answers direct gets, and a follower may lag behind the leader (it holds
  // a prefix of the stream): so the replica stays at the last message
  // loaded, and the consumer, served by the leader, delivers whatever
  // follows (ApplyLoop::CatchUpTo moves past messages that are gone).
  if (past_up_to && at.revision < up_to) {
    if (Status s = replica->CommitSnapshotFill(replica->PrepareSnapshotFill({}, {}), up_to);
        !s.ok()) {
      return s;
    }
    at.revision = up_to;
  }
  if (progress) progress(at);
  return BootstrapPath::kSnapshot;
}

}  // namespace revkv::replication
