// Crash safety: revkv_crash_writer (crash_writer.cc) writes to a store in a
// loop and acknowledges each write on stdout; this suite kills it with
// SIGKILL at a random moment, reopens the store and checks that
//   (a) every acknowledged write survived, with its value and, as far as the
//       bucket's history retains it, every earlier acknowledged revision;
//   (b) no write is half-applied: the revision counter, the revision log,
//       each key's latest record and its history records agree exactly, and
//       at most the one write in flight at the kill landed unacknowledged;
//   (c) the store takes new writes after the reopen, above the old maximum.
// Each test runs several kill rounds on one directory; the writer resumes
// from the reopened state each time.

#include "tests/test_util.h"
#include "tests/crash_value.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/layout.h"
#include "engine/local_bucket.h"
#include "engine/local_engine.h"
#include "revkv/revkv.h"

#ifndef REVKV_CRASH_WRITER
#error "REVKV_CRASH_WRITER must name the revkv_crash_writer binary"
#endif

namespace revkv {
namespace {

constexpr char kBucket[] = "crash";
constexpr int kWriterKeys = 20;  // "k.0".."k.19", as crash_writer.cc
constexpr int kRounds = 8;
constexpr size_t kMinAcks = 200;
constexpr size_t kMaxAcks = 2000;
// A writer that cannot produce its acknowledgements in this time is stuck.
constexpr auto kRoundDeadline = std::chrono::seconds(20);

// ---- Helpers shared with crash_writer.cc's value format ----

using revkv::testing::Fnv1a64;
using revkv::testing::Hex16;

// Empty if `value` is a well-formed writer value for `key`, else what is
// wrong: "<key>|<pid>|<seq>|<length>|<filler><16 hex FNV-1a of the rest>".
std::string CheckWriterValue(std::string_view key, std::string_view value) {
  if (value.size() < 16) return "value of " + std::to_string(value.size()) + " bytes is too short";
  std::string_view body = value.substr(0, value.size() - 16);
  if (Hex16(Fnv1a64(body)) != value.substr(value.size() - 16)) return "value checksum mismatch";
  std::vector<std::string_view> fields;
  size_t start = 0;
  for (int i = 0; i < 4; ++i) {
    size_t bar = body.find('|', start);
    if (bar == std::string_view::npos) return "value header has fewer than 4 fields";
    fields.push_back(body.substr(start, bar - start));
    start = bar + 1;
  }
  if (fields[0] != key) return "value names key '" + std::string(fields[0]) + "'";
  if (fields[3] != std::to_string(value.size())) {
    return "value says length " + std::string(fields[3]) + " but has " +
           std::to_string(value.size()) + " bytes";
  }
  return "";
}

// What a stored revision must hold: its operation and, for a Put, the
// checksum of its value ("-" for tombstones).
struct Revision {
  uint64_t revision = 0;
  Operation op = Operation::kPut;
  std::string checksum;
};

std::string Checksum(const Entry& e) { return e.is_tombstone() ? "-" : Hex16(Fnv1a64(e.value)); }

std::string Describe(const std::string& key, const Revision& r) {
  return key + "@" + std::to_string(r.revision) + " " + std::string(OperationName(r.op)) + " " +
         r.checksum;
}
std::string Describe(const Entry& e) {
  return Describe(e.key, {e.revision, e.operation, Checksum(e)});
}

// What the bucket must hold: per key, the revisions its history setting
// retains, oldest first, as NATS KV defines them.
class Model {
 public:
  explicit Model(int history) : history_(history) {}

  void Apply(const std::string& key, Revision r) {
    std::vector<Revision>& revs = keys_[key];
    if (r.op == Operation::kPurge) revs.clear();
    revs.push_back(std::move(r));
    while (revs.size() > static_cast<size_t>(history_)) revs.erase(revs.begin());
  }

  // Empty if the key never had an entry.
  const std::vector<Revision>& Retained(const std::string& key) const {
    static const std::vector<Revision> kNone;
    auto it = keys_.find(key);
    return it == keys_.end() ? kNone : it->second;
  }

  const std::map<std::string, std::vector<Revision>>& keys() const { return keys_; }

  // Every retained revision, in revision order: what ChangesSince(0) returns.
  std::vector<std::pair<std::string, Revision>> ChangeLog() const {
    std::vector<std::pair<std::string, Revision>> out;
    for (const auto& [key, revs] : keys_) {
      for (const Revision& r : revs) out.emplace_back(key, r);
    }
    std::sort(out.begin(), out.end(),
              [](const auto& a, const auto& b) { return a.second.revision < b.second.revision; });
    return out;
  }

  std::vector<std::string> LiveKeys() const {
    std::vector<std::string> out;
    for (const auto& [key, revs] : keys_) {
      if (!revs.empty() && revs.back().op == Operation::kPut) out.push_back(key);
    }
    return out;
  }

 private:
  const int history_;
  std::map<std::string, std::vector<Revision>> keys_;
};

// One acknowledged write, as the writer printed it.
struct Ack {
  std::string op;  // PUT CREATE UPDATE DEL PURGE
  std::string key;
  uint64_t revision = 0;
  std::string checksum;
};

bool ParseAck(const std::string& line, Ack* ack) {
  std::istringstream in(line);
  std::string extra;
  if (!(in >> ack->op >> ack->key >> ack->revision >> ack->checksum) || (in >> extra)) return false;
  static const std::set<std::string> kOps = {"PUT", "CREATE", "UPDATE", "DEL", "PURGE"};
  if (kOps.count(ack->op) == 0 || ack->revision == 0) return false;
  const bool tombstone = ack->op == "DEL" || ack->op == "PURGE";
  return tombstone ? ack->checksum == "-" : ack->checksum.size() == 16;
}

Operation AckOperation(const Ack& ack) {
  if (ack.op == "DEL") return Operation::kDelete;
  if (ack.op == "PURGE") return Operation::kPurge;
  return Operation::kPut;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

using revkv::testing::TempDir;

// The writer child: started with fork+exec, stdout on a pipe, stderr in a
// file. Killed only through its own PID.
class WriterProcess {
 public:
  WriterProcess() = default;
  WriterProcess(const WriterProcess&) = delete;
  WriterProcess& operator=(const WriterProcess&) = delete;
  ~WriterProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }

  void Start(const std::string& store, int history, const std::string& stderr_path) {
    stderr_path_ = stderr_path;
    // Everything the child needs is built before fork: after it, the child
    // only calls async-signal-safe functions.
    std::string binary = REVKV_CRASH_WRITER;
    std::string bucket = kBucket;
    std::string history_arg = std::to_string(history);
    std::vector<char*> argv = {binary.data(), const_cast<char*>(store.c_str()), bucket.data(),
                               history_arg.data(), nullptr};
    int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(err, 0) << "open " << stderr_path << ": " << std::strerror(errno);
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0) << std::strerror(errno);
    pid_t pid = ::fork();
    if (pid == 0) {
      if (::dup2(fds[1], STDOUT_FILENO) < 0 || ::dup2(err, STDERR_FILENO) < 0) ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const int fork_errno = errno;
    ::close(fds[1]);
    ::close(err);
    fd_ = fds[0];
    ASSERT_GT(pid, 0) << "fork: " << std::strerror(fork_errno);
    pid_ = pid;
  }

  // Reads acknowledgement lines until `want` of them arrived in total, the
  // writer closed its stdout (it died), or the deadline passed.
  void ReadUntil(size_t want, std::chrono::steady_clock::time_point deadline) {
    while (lines_.size() < want && !eof_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      pollfd p{fd_, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
      if (n < 0 && errno != EINTR) return;
      if (n > 0) ReadSome();
    }
  }

  // SIGKILLs the writer, reaps it, and reads every line it completed before
  // dying. Returns false (with `why`) if it had already exited on its own.
  bool KillAndDrain(std::string* why) {
    bool killed_by_us = false;
    if (pid_ > 0) {
      EXPECT_EQ(::kill(pid_, SIGKILL), 0) << std::strerror(errno);
      int status = 0;
      pid_t r;
      do {
        r = ::waitpid(pid_, &status, 0);
      } while (r < 0 && errno == EINTR);
      EXPECT_EQ(r, pid_) << std::strerror(errno);
      pid_ = -1;
      killed_by_us = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
      if (!killed_by_us) {
        *why = "the writer ended on its own (" +
               (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                  : "signal " + std::to_string(WTERMSIG(status))) +
               "); its stderr:\n" + ReadFile(stderr_path_);
      }
    }
    while (!eof_) ReadSome();  // the child is gone: EOF comes after the rest
    return killed_by_us;
  }

  const std::vector<std::string>& lines() const { return lines_; }
  // Bytes of a line the writer had not finished when it died.
  size_t partial_bytes() const { return partial_.size(); }
  std::string stderr_text() const { return ReadFile(stderr_path_); }

 private:
  void ReadSome() {
    char buf[65536];
    ssize_t n = ::read(fd_, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) return;
      ADD_FAILURE() << "reading the writer's stdout: " << std::strerror(errno);
      eof_ = true;
      return;
    }
    if (n == 0) {
      eof_ = true;
      return;
    }
    partial_.append(buf, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
      lines_.push_back(partial_.substr(start, nl - start));
    }
    partial_.erase(0, start);
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  bool eof_ = false;
  std::string stderr_path_;
  std::string partial_;
  std::vector<std::string> lines_;
};

struct Opened {
  std::unique_ptr<Engine> engine;
  std::shared_ptr<Bucket> bucket;
};

void OpenStore(const std::string& path, int history, Opened* out) {
  Options options;
  options.path = path;
  auto engine = Engine::Open(options);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  BucketOptions bucket_options;
  bucket_options.history = history;
  auto bucket = (*engine)->OpenBucket(kBucket, bucket_options);
  ASSERT_TRUE(bucket.ok()) << bucket.status().ToString();
  out->engine = std::move(*engine);
  out->bucket = std::move(*bucket);
}

// Checks the bucket against the model through the public API: the change
// log, every key's latest entry and history, and the live key list. Every
// read must succeed: a Corruption fails the test.
void VerifyThroughApi(Bucket& bucket, const Model& model, uint64_t last_revision) {
  EXPECT_EQ(bucket.LastRevision(), last_revision);

  auto changes = bucket.ChangesSince(0, size_t{1} << 30);
  ASSERT_TRUE(changes.ok()) << "ChangesSince(0): " << changes.status().ToString();
  uint64_t previous = 0;
  for (const Entry& e : *changes) {
    ASSERT_GT(e.revision, previous) << "revision log out of order or repeated at " << Describe(e);
    previous = e.revision;
  }
  if (last_revision > 0) {
    ASSERT_FALSE(changes->empty());
    EXPECT_EQ(changes->back().revision, last_revision)
        << "the newest revision in the log differs from LastRevision()";
  }
  auto expected = model.ChangeLog();
  std::vector<std::string> want, got;
  for (const auto& [key, r] : expected) want.push_back(Describe(key, r));
  for (const Entry& e : *changes) got.push_back(Describe(e));
  EXPECT_EQ(got, want) << "ChangesSince(0) differs from the acknowledged writes";

  // ChangesSince from the middle agrees with the full log.
  if (changes->size() > 2) {
    size_t mid = changes->size() / 2;
    auto tail = bucket.ChangesSince((*changes)[mid].revision, 7);
    ASSERT_TRUE(tail.ok()) << tail.status().ToString();
    ASSERT_EQ(tail->size(), std::min<size_t>(7, changes->size() - mid - 1));
    for (size_t i = 0; i < tail->size(); ++i) {
      EXPECT_EQ(Describe((*tail)[i]), Describe((*changes)[mid + 1 + i]));
    }
  }

  std::set<std::string> keys;
  for (int i = 0; i < kWriterKeys; ++i) keys.insert("k." + std::to_string(i));
  for (const auto& [key, revs] : model.keys()) keys.insert(key);
  for (const std::string& key : keys) {
    SCOPED_TRACE("key " + key);
    const std::vector<Revision>& retained = model.Retained(key);
    auto history = bucket.History(key);
    auto entry = bucket.GetEntry(key);
    auto value = bucket.Get(key);
    if (retained.empty()) {
      EXPECT_TRUE(history.status().IsNotFound()) << history.status().ToString();
      EXPECT_TRUE(entry.status().IsNotFound()) << entry.status().ToString();
      EXPECT_EQ(entry.status().revision(), 0u);
      EXPECT_TRUE(value.status().IsNotFound()) << value.status().ToString();
      continue;
    }
    ASSERT_TRUE(history.ok()) << history.status().ToString();
    std::vector<std::string> want_history, got_history;
    for (const Revision& r : retained) want_history.push_back(Describe(key, r));
    for (const Entry& e : *history) {
      got_history.push_back(Describe(e));
      if (!e.is_tombstone() && key.rfind("k.", 0) == 0) {
        EXPECT_EQ(CheckWriterValue(key, e.value), "") << "at revision " << e.revision;
      }
    }
    EXPECT_EQ(got_history, want_history);

    const Revision& latest = retained.back();
    if (latest.op == Operation::kPut) {
      ASSERT_TRUE(entry.ok()) << entry.status().ToString();
      EXPECT_EQ(entry->key, key);
      EXPECT_EQ(Describe(*entry), Describe(key, latest));
      ASSERT_TRUE(value.ok()) << value.status().ToString();
      EXPECT_EQ(Hex16(Fnv1a64(*value)), latest.checksum);
    } else {
      EXPECT_TRUE(entry.status().IsNotFound()) << entry.status().ToString();
      EXPECT_EQ(entry.status().revision(), latest.revision);
      EXPECT_TRUE(value.status().IsNotFound()) << value.status().ToString();
      EXPECT_EQ(value.status().revision(), latest.revision);
    }
  }

  auto live = bucket.Keys(">");
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  EXPECT_EQ(*live, model.LiveKeys()) << "Keys(\">\") differs from the keys whose latest is a Put";
}

// Checks the raw column families: no record the model does not explain (a
// leftover history or revision-log record would be a half-applied or leaked
// write), and none missing.
void VerifyRawLayout(Engine& engine, Bucket& bucket, const Model& model) {
  auto* local = dynamic_cast<engine::LocalEngine*>(&engine);
  auto* local_bucket = dynamic_cast<engine::LocalBucket*>(&bucket);
  ASSERT_NE(local, nullptr);
  ASSERT_NE(local_bucket, nullptr);
  rocksdb::DB* db = local->TEST_db();

  std::set<std::string> want, got;
  for (const auto& [key, revs] : model.keys()) {
    if (revs.empty()) continue;
    want.insert(engine::LatestKey(key));
    for (size_t i = 0; i + 1 < revs.size(); ++i) {
      want.insert(engine::HistoryKey(key, revs[i].revision));
    }
    // Log records are told apart from record keys by a leading "log/".
    for (const Revision& r : revs) want.insert("log/" + engine::RevisionKey(r.revision));
  }
  for (auto* family : {local_bucket->TEST_family(), local_bucket->TEST_log_family()}) {
    const std::string tag = family == local_bucket->TEST_family() ? "" : "log/";
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), family));
    for (it->SeekToFirst(); it->Valid(); it->Next()) got.insert(tag + it->key().ToString());
    ASSERT_TRUE(it->status().ok()) << it->status().ToString();
  }

  auto printable = [](const std::string& raw) {
    if (raw.rfind("log/", 0) == 0) {
      return "r" + std::to_string(engine::DecodeBE64(raw.substr(4)));
    }
    size_t nul = raw.find('\0');
    if (nul == std::string::npos) return raw;
    return raw.substr(0, nul) + "@" + std::to_string(engine::DecodeBE64(raw.substr(nul + 1)));
  };
  std::vector<std::string> extra, missing;
  for (const std::string& k : got) {
    if (want.count(k) == 0) extra.push_back(printable(k));
  }
  for (const std::string& k : want) {
    if (got.count(k) == 0) missing.push_back(printable(k));
  }
  EXPECT_TRUE(extra.empty()) << extra.size() << " stored records no write explains, e.g. "
                             << extra.front();
  EXPECT_TRUE(missing.empty()) << missing.size() << " records missing, e.g. " << missing.front();
}

// One round: start the writer, read a random number of acknowledgements,
// SIGKILL it, then reopen and check the store. Updates `model` and
// `last_revision` with what the store is now known to hold.
void KillRound(const std::string& store, const std::string& scratch, int history, size_t target,
               int linger_us, Model* model, uint64_t* last_revision, size_t* acks_seen,
               size_t* unacked_landed) {
  std::vector<std::string> lines;
  {
    WriterProcess writer;
    ASSERT_NO_FATAL_FAILURE(writer.Start(store, history, scratch + "/writer.stderr"));
    writer.ReadUntil(target, std::chrono::steady_clock::now() + kRoundDeadline);
    if (linger_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(linger_us));
    std::string why;
    bool killed = writer.KillAndDrain(&why);
    ASSERT_TRUE(killed) << why;
    ASSERT_GE(writer.lines().size(), target)
        << "the writer acknowledged too few writes in time; its stderr:\n"
        << writer.stderr_text();
    // Each acknowledgement is one write(2) of under PIPE_BUF bytes, so none
    // is torn; a partial line would be unacknowledged anyway.
    EXPECT_EQ(writer.partial_bytes(), 0u);
    lines = writer.lines();
  }
  *acks_seen += lines.size();

  // Acknowledged writes, in order, into the model.
  for (const std::string& line : lines) {
    Ack ack;
    ASSERT_TRUE(ParseAck(line, &ack)) << "bad acknowledgement line: '" << line << "'";
    ASSERT_GT(ack.revision, *last_revision) << "revisions must increase: " << line;
    model->Apply(ack.key, {ack.revision, AckOperation(ack), ack.checksum});
    *last_revision = ack.revision;
  }
  const uint64_t last_acked = *last_revision;

  Opened s;
  ASSERT_NO_FATAL_FAILURE(OpenStore(store, history, &s));
  const uint64_t last = s.bucket->LastRevision();
  // At most one write was in flight when the kill landed.
  ASSERT_TRUE(last == last_acked || last == last_acked + 1)
      << "LastRevision() is " << last << " after acknowledged revision " << last_acked
      << (last < last_acked ? ": acknowledged writes were lost" : ": too many writes landed");

  // (a) each key's last acknowledged write is its latest, unless the one
  // unacknowledged write landed on it.
  for (const auto& [key, revs] : model->keys()) {
    if (revs.empty()) continue;
    const Revision& acked = revs.back();
    auto h = s.bucket->History(key);
    ASSERT_TRUE(h.ok()) << key << ": " << h.status().ToString();
    ASSERT_FALSE(h->empty());
    const Entry& latest = h->back();
    if (latest.revision == last && last == last_acked + 1) continue;  // checked below
    EXPECT_EQ(Describe(latest), Describe(key, acked))
        << "acknowledged write lost or changed for " << key;
  }

  // The unacknowledged write, if it landed, must be whole; it joins the model.
  if (last == last_acked + 1) {
    ++*unacked_landed;
    auto tail = s.bucket->ChangesSince(last_acked, 10);
    ASSERT_TRUE(tail.ok()) << tail.status().ToString();
    ASSERT_EQ(tail->size(), 1u) << "the in-flight write is not in the revision log";
    const Entry& e = tail->front();
    ASSERT_EQ(e.revision, last);
    ASSERT_EQ(e.key.rfind("k.", 0), 0u) << e.key;
    if (!e.is_tombstone()) {
      ASSERT_EQ(CheckWriterValue(e.key, e.value), "") << "in-flight write " << Describe(e);
    }
    model->Apply(e.key, {e.revision, e.operation, Checksum(e)});
    *last_revision = last;
  }

  // (b) the whole bucket agrees with the model.
  ASSERT_NO_FATAL_FAILURE(VerifyThroughApi(*s.bucket, *model, *last_revision));
  ASSERT_NO_FATAL_FAILURE(VerifyRawLayout(*s.engine, *s.bucket, *model));

  // (c) the reopened store takes writes, above every earlier revision.
  const std::string probe = "probe.r" + std::to_string(*last_revision);
  const std::string probe_value = "written after reopening at " + std::to_string(*last_revision);
  auto put = s.bucket->Put(probe, probe_value);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(*put, *last_revision + 1);
  auto got = s.bucket->Get(probe);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, probe_value);
  EXPECT_EQ(s.bucket->LastRevision(), *put);
  model->Apply(probe, {*put, Operation::kPut, Hex16(Fnv1a64(probe_value))});
  *last_revision = *put;
}

void RunKillRounds(int history) {
  TempDir dir;
  const std::string store = dir.path() + "/store";

  std::random_device rd;
  const uint32_t seed = rd();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);

  {
    Opened s;  // creates the bucket with its history setting
    ASSERT_NO_FATAL_FAILURE(OpenStore(store, history, &s));
    ASSERT_EQ(s.bucket->history(), history);
    ASSERT_EQ(s.bucket->LastRevision(), 0u);
  }

  Model model(history);
  uint64_t last_revision = 0;
  size_t acks = 0;
  size_t unacked_landed = 0;
  for (int round = 0; round < kRounds; ++round) {
    const size_t target = std::uniform_int_distribution<size_t>(kMinAcks, kMaxAcks)(rng);
    const int linger_us = std::uniform_int_distribution<int>(0, 3)(rng) == 0
                              ? 0
                              : std::uniform_int_distribution<int>(0, 2000)(rng);
    SCOPED_TRACE("round " + std::to_string(round) + ", killed after " + std::to_string(target) +
                 " acks + " + std::to_string(linger_us) + " us");
    ASSERT_NO_FATAL_FAILURE(KillRound(store, dir.path(), history, target, linger_us, &model,
                                      &last_revision, &acks, &unacked_landed));
  }

  // The writer ran every round and covered the key space.
  EXPECT_GE(acks, kRounds * kMinAcks);
  size_t writer_keys = 0;
  for (const auto& [key, revs] : model.keys()) writer_keys += key.rfind("k.", 0) == 0;
  EXPECT_EQ(writer_keys, static_cast<size_t>(kWriterKeys));
  std::printf("[ history %d ] %zu acknowledged writes over %d kills, %zu unacknowledged in-flight "
              "writes landed, last revision %" PRIu64 "\n",
              history, acks, kRounds, unacked_landed, last_revision);
}

// The history setting under test: 1 keeps only each key's latest revision,
// 5 also keeps (and so must recover) four earlier ones per key.
class CrashTest : public ::testing::TestWithParam<int> {};

TEST_P(CrashTest, KillNineLosesNoAcknowledgedWrite) { RunKillRounds(GetParam()); }

// Named "crash/..." so that `ctest -R crash` selects these tests.
INSTANTIATE_TEST_SUITE_P(crash, CrashTest, ::testing::Values(1, 5),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "History" + std::to_string(info.param);
                         });

}  // namespace
}  // namespace revkv
