// The seed's job-state service, shared by its two versions:
//   job_state_lock.cc  updates job records under a distributed lock;
//   job_state_occ.cc   updates them optimistically (Bucket::UpdateWithRetry).
//
// This header has the parts that do not depend on the strategy: the job
// record and its text form, the job's state machine, and the demo harness
// (flags, submitting jobs, the workers' scan for work, the final check).
//
// A job lives under the key "job.<run>.<n>" of the bucket "jobstate", as
//   status=running;owner=p41-3f2a/w2;attempts=1;progress=50;updates=3[;fence=17]
// Every write is a read-modify-write of the previous record and bumps
// `updates` by one, so a job's history must count 0, 1, 2, ... without a gap
// or a repeat: a repeat is a lost update (two writers built on one record).
//
// Every run submits its own jobs (the run id in the key keeps runs apart) and
// announces itself under "run.<run>" until it ends; its workers take any
// queued job of any announced run. With --nats, several processes on one
// server therefore share the work; each waits until its own jobs are done, by
// whichever process, then checks them.

#ifndef REVKV_EXAMPLES_JOB_STATE_H_
#define REVKV_EXAMPLES_JOB_STATE_H_

#include <unistd.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "revkv/revkv.h"

namespace jobstate {

// ---- The job record ----

enum class JobStatus { kQueued, kRunning, kDone, kFailed };

struct JobState {
  JobStatus status = JobStatus::kQueued;
  std::string owner;     // the worker of the current or last attempt; empty while never claimed
  int attempts = 0;      // claims so far
  int progress = 0;      // percent done of the current attempt
  uint64_t updates = 0;  // writes since the job was submitted
  uint64_t fence = 0;    // the lock version's fencing token of this write; 0: none
};

inline const char* StatusName(JobStatus s) {
  switch (s) {
    case JobStatus::kQueued:
      return "queued";
    case JobStatus::kRunning:
      return "running";
    case JobStatus::kDone:
      return "done";
    case JobStatus::kFailed:
      return "failed";
  }
  return "?";
}

inline constexpr int kMaxAttemptsStored = 1000;  // sanity bound when parsing

inline std::string Encode(const JobState& s) {
  std::string out = std::string("status=") + StatusName(s.status) + ";owner=" + s.owner +
                    ";attempts=" + std::to_string(s.attempts) +
                    ";progress=" + std::to_string(s.progress) +
                    ";updates=" + std::to_string(s.updates);
  if (s.fence != 0) out += ";fence=" + std::to_string(s.fence);
  return out;
}

// A decimal number, nothing else, at most `max`.
inline std::optional<uint64_t> ParseNumber(std::string_view text, uint64_t max) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n > max) {
    return std::nullopt;
  }
  return n;
}

template <typename T>
bool ParseInto(std::string_view text, uint64_t max, T* out) {
  auto n = ParseNumber(text, max);
  if (n) *out = static_cast<T>(*n);
  return n.has_value();
}

inline bool ParseStatus(std::string_view text, JobStatus* out) {
  for (JobStatus s :
       {JobStatus::kQueued, JobStatus::kRunning, JobStatus::kDone, JobStatus::kFailed}) {
    if (text == StatusName(s)) {
      *out = s;
      return true;
    }
  }
  return false;
}

// Parses Encode's form strictly: every field but fence exactly once, no
// unknown field, numbers in range. Anything else is Corruption, never a crash.
inline revkv::Result<JobState> Decode(std::string_view record) {
  auto bad = [&](const std::string& why) {
    return revkv::Status::Corruption("job record \"" + std::string(record) + "\": " + why);
  };
  static constexpr std::string_view kFields[] = {"status",   "owner",   "attempts",
                                                 "progress", "updates", "fence"};
  JobState s;
  unsigned seen = 0;  // bit i: kFields[i] was read
  for (size_t pos = 0; pos < record.size();) {
    size_t semi = record.find(';', pos);
    if (semi == std::string_view::npos) semi = record.size();
    const std::string_view field = record.substr(pos, semi - pos);
    pos = semi + 1;
    if (pos == record.size()) return bad("trailing ';'");
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) return bad("field without '='");
    const std::string_view name = field.substr(0, eq), value = field.substr(eq + 1);
    unsigned i = 0;
    while (i < 6 && kFields[i] != name) ++i;
    if (i == 6) return bad("unknown field '" + std::string(name) + "'");
    if (seen & (1u << i)) return bad("field '" + std::string(name) + "' twice");
    seen |= 1u << i;
    const bool ok = i == 0   ? ParseStatus(value, &s.status)
                    : i == 1 ? (s.owner = value, true)
                    : i == 2 ? ParseInto(value, kMaxAttemptsStored, &s.attempts)
                    : i == 3 ? ParseInto(value, 100, &s.progress)
                    : i == 4 ? ParseInto(value, UINT64_MAX, &s.updates)
                             : ParseInto(value, UINT64_MAX, &s.fence);
    if (!ok) return bad("bad value in '" + std::string(field) + "'");
  }
  if ((seen & 0x1f) != 0x1f) {
    return bad("a field is missing (status, owner, attempts, progress, updates)");
  }
  return s;
}

// ---- The state machine ----
// Each transition returns the next record, or std::nullopt when it does not
// apply to `s` (another worker got there first). They are pure functions, so
// an optimistic update may run them again on a newer record.

inline constexpr int kMaxAttempts = 3;
inline constexpr int kStep = 25;  // progress per Advance: four steps to 100

// queued, or failed with attempts left -> running, owned by `worker`.
inline std::optional<JobState> Claim(const JobState& s, std::string_view worker) {
  const bool retry = s.status == JobStatus::kFailed && s.attempts < kMaxAttempts;
  if (s.status != JobStatus::kQueued && !retry) return std::nullopt;
  JobState next = s;
  next.status = JobStatus::kRunning;
  next.owner = worker;
  next.attempts = s.attempts + 1;
  next.progress = 0;
  next.updates = s.updates + 1;
  return next;
}

// running and owned by `worker` -> progress + kStep.
inline std::optional<JobState> Advance(const JobState& s, std::string_view worker) {
  if (s.status != JobStatus::kRunning || s.owner != worker || s.progress >= 100) {
    return std::nullopt;
  }
  JobState next = s;
  next.progress = s.progress + kStep;
  next.updates = s.updates + 1;
  return next;
}

// running and owned by `worker` -> done (at 100%) or failed.
inline std::optional<JobState> Finish(const JobState& s, std::string_view worker, bool ok) {
  if (s.status != JobStatus::kRunning || s.owner != worker || (ok && s.progress != 100)) {
    return std::nullopt;
  }
  JobState next = s;
  next.status = ok ? JobStatus::kDone : JobStatus::kFailed;
  next.updates = s.updates + 1;
  return next;
}

// ---- The demo harness ----

inline constexpr const char* kBucket = "jobstate";
inline constexpr int kHistory = 32;  // > the most writes a job gets (1 + 3 attempts * 6)

inline std::string JobKey(const std::string& run, int n) {
  char digits[16];
  std::snprintf(digits, sizeof digits, "%05d", n);
  return "job." + run + "." + digits;
}
// "job.<run>.<n>" -> run, n (std::nullopt for a key of another shape).
inline std::optional<std::pair<std::string, int>> ParseJobKey(std::string_view key) {
  const size_t first = key.find('.'), last = key.rfind('.');
  if (key.substr(0, first) != "job" || last - first < 2 || key.find('.', first + 1) != last) {
    return std::nullopt;
  }
  auto n = ParseNumber(key.substr(last + 1), 99999);
  if (!n) return std::nullopt;
  return std::pair{std::string(key.substr(first + 1, last - first - 1)), static_cast<int>(*n)};
}
// The count of a run's finished jobs: a hot key every worker increments.
inline std::string CounterKey(const std::string& run) { return "stats." + run + ".done"; }
// Live while the run is in progress: workers look for jobs of these runs only.
inline std::string RunKey(const std::string& run) { return "run." + run; }

// A stand-in for a job's real work between two progress reports.
inline void DoSomeWork() { std::this_thread::sleep_for(std::chrono::microseconds(200)); }

// A stand-in for real failures: every fifth job fails its first attempt
// halfway and is retried, so `attempts` must end at 2 for it and 1 otherwise.
inline bool FailsThisAttempt(int n, int attempt) { return n % 5 == 0 && attempt == 1; }
inline int ExpectedAttempts(int n) { return FailsThisAttempt(n, 1) ? 2 : 1; }

struct Flags {
  std::string db;
  std::string nats;  // empty: a local store, no replication
  int workers = 4;
  int jobs = 100;
  std::string run;  // names this run's jobs; default "p<pid>-<random>"
  std::chrono::seconds timeout{60};
};

// Parses the flags; prints what is wrong and returns std::nullopt on error.
inline std::optional<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  auto usage = [&](const std::string& why) -> std::optional<Flags> {
    std::fprintf(stderr,
                 "%s\nusage: %s --db DIR [--nats URL] [--workers N] [--jobs M] [--run ID]"
                 " [--timeout SECONDS]\n",
                 why.c_str(), argv[0]);
    return std::nullopt;
  };
  for (int i = 1; i < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) return usage(std::string(flag) + " needs a value");
    const std::string value = argv[i + 1];
    bool ok = true;
    if (flag == "--db") {
      f.db = value;
    } else if (flag == "--nats") {
      f.nats = value;
    } else if (flag == "--run") {
      f.run = value;
    } else if (flag == "--workers") {
      ok = ParseInto(value, 64, &f.workers) && f.workers > 0;
    } else if (flag == "--jobs") {
      ok = ParseInto(value, 99999, &f.jobs) && f.jobs > 0;
    } else if (flag == "--timeout") {
      int64_t seconds = 0;
      ok = ParseInto(value, 3600, &seconds) && seconds > 0;
      f.timeout = std::chrono::seconds(seconds);
    } else {
      return usage("unknown flag " + std::string(flag));
    }
    if (!ok) return usage("bad value for " + std::string(flag) + ": " + value);
  }
  if (f.db.empty()) return usage("--db is required");
  if (f.run.empty()) {
    char suffix[8];
    std::snprintf(suffix, sizeof suffix, "%04x", unsigned(std::random_device{}() & 0xffff));
    f.run = "p" + std::to_string(getpid()) + "-" + suffix;
  }
  for (char c : f.run) {  // one key token, and no ';' or '=' for the record
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      return usage("--run uses [A-Za-z0-9_-]");
    }
  }
  return f;
}

// Creates this run's counter at 0, submits its jobs (queued), then
// announces the run to the workers of every process.
inline revkv::Status Submit(revkv::Bucket& bucket, const Flags& f) {
  // Workers find jobs through the run's record, written last; a replica
  // applies writes in revision order, so whoever sees the record sees the
  // jobs and the counter too.
  auto rev = bucket.Create(CounterKey(f.run), "0");
  if (!rev.ok()) return rev.status();  // Exists: the run id is taken; pick another --run
  for (int n = 0; n < f.jobs && rev.ok(); ++n) rev = bucket.Create(JobKey(f.run, n), Encode({}));
  if (rev.ok()) rev = bucket.Create(RunKey(f.run), "jobs=" + std::to_string(f.jobs));
  return rev.ok() ? revkv::Status::OK() : rev.status();
}

// Ends the run: its jobs leave the workers' scans (the records stay).
inline revkv::Status EndRun(revkv::Bucket& bucket, const Flags& f) {
  auto rev = bucket.Delete(RunKey(f.run));
  return rev.ok() ? revkv::Status::OK() : rev.status();
}

// One worker's loop: scans the jobs of the runs in progress on the local
// replica (cheap: no network; a real service would rather keep an index of
// queued jobs), and calls `work` with the key of each job that looks claimable.
// `work` claims and runs it with its strategy and returns true, or returns
// false if the claim was declined (another worker was first). The loop ends
// when every job of this run is done, wherever it ran.
inline revkv::Status RunWorker(revkv::Bucket& bucket, const Flags& f,
                               std::chrono::steady_clock::time_point deadline,
                               const std::function<revkv::Result<bool>(const std::string&)>& work) {
  std::minstd_rand rng(std::random_device{}());
  std::unordered_set<std::string> done;  // jobs seen done: they never change again
  for (;;) {
    auto runs = bucket.Keys("run.>");
    if (!runs.ok()) return runs.status();
    std::vector<std::string> keys;
    for (const std::string& run : *runs) {
      auto jobs = bucket.Keys("job." + run.substr(4) + ".>");
      if (!jobs.ok()) return jobs.status();
      keys.insert(keys.end(), jobs->begin(), jobs->end());
    }
    int open = 0;  // this run's jobs not done yet, if no job was worked in this pass
    bool worked = false;
    // Start at a random job, so that workers do not all race for the first one.
    const size_t start = keys.empty() ? 0 : rng() % keys.size();
    for (size_t i = 0; i < keys.size(); ++i) {
      const std::string& key = keys[(start + i) % keys.size()];
      if (done.contains(key)) continue;
      auto value = bucket.Get(key);
      if (value.status().IsNotFound()) continue;
      if (!value.ok()) return value.status();
      auto state = Decode(*value);
      if (!state.ok()) return state.status();
      if (state->status == JobStatus::kDone) {
        done.insert(key);
        continue;
      }
      auto parsed = ParseJobKey(key);
      if (parsed && parsed->first == f.run) ++open;
      if (!Claim(*state, "")) continue;  // not claimable: running, done, or out of attempts
      auto r = work(key);
      if (!r.ok()) return r.status();
      worked = worked || *r;
    }
    if (worked) continue;
    if (open == 0) return revkv::Status::OK();
    if (std::chrono::steady_clock::now() > deadline) {
      return revkv::Status::Timeout(std::to_string(open) + " jobs of run " + f.run +
                                    " still not done when --timeout passed");
    }
    // Our remaining jobs are running elsewhere; look again shortly.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// Checks this run's jobs once the workers are done; prints each violation
// and returns how many there were. Invariants:
//   - every job is done at 100%, with the attempts its simulated failures
//     call for, and exactly one revision in its history says done;
//   - its history counts updates 0, 1, 2, ... with no repeat (no lost update)
//     and its fencing tokens, where recorded, never go down;
//   - the run's counter says exactly `jobs` (within 10 s: see below).
// The histories are complete: this process's replica created these jobs, so
// it has applied every later revision of them too.
// `done_elsewhere` gets how many of the jobs workers of other runs finished.
inline int Verify(revkv::Bucket& bucket, const Flags& f, int* done_elsewhere) {
  int problems = 0;
  auto fail = [&](const std::string& what) {
    if (++problems <= 10) std::fprintf(stderr, "INVARIANT: %s\n", what.c_str());
  };
  if (revkv::Status s = bucket.Sync(std::chrono::seconds(10)); !s.ok()) {
    fail("sync before checking: " + s.ToString());
    return problems;
  }
  *done_elsewhere = 0;
  for (int n = 0; n < f.jobs; ++n) {
    const std::string key = JobKey(f.run, n);
    auto history = bucket.History(key);
    if (!history.ok()) {
      fail(key + ": " + history.status().ToString());
      continue;
    }
    int done = 0;
    std::optional<JobState> prev;
    for (const revkv::Entry& e : *history) {
      auto s = Decode(e.value);
      if (e.is_tombstone() || !s.ok()) {
        fail(key + " rev " + std::to_string(e.revision) + ": " +
             (s.ok() ? "deleted" : s.status().ToString()));
        break;
      }
      if (s->updates != (prev ? prev->updates + 1 : 0)) {
        fail(key + " rev " + std::to_string(e.revision) +
             ": updates=" + std::to_string(s->updates) + " after " +
             (prev ? std::to_string(prev->updates) : "nothing") + ": a lost update");
      }
      if (prev && s->fence != 0 && s->fence < prev->fence) {
        fail(key + " rev " + std::to_string(e.revision) + ": fence " + std::to_string(s->fence) +
             " after " + std::to_string(prev->fence) + ": a stale lock holder wrote");
      }
      done += s->status == JobStatus::kDone;
      prev = std::move(*s);
    }
    if (!prev) continue;
    if (prev->status != JobStatus::kDone || prev->progress != 100 || done != 1) {
      fail(key + " ends as " + Encode(*prev) + " with " + std::to_string(done) +
           " done revisions; want done at 100% once");
    }
    if (prev->attempts != ExpectedAttempts(n)) {
      fail(key + " took " + std::to_string(prev->attempts) + " attempts; want " +
           std::to_string(ExpectedAttempts(n)));
    }
    if (prev->owner.rfind(f.run + "/", 0) != 0) ++*done_elsewhere;
  }
  // A worker counts a job after marking it done, so when a worker of another
  // process finished our last jobs, the counter may still trail: give it time.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  revkv::Result<std::string> count = revkv::Status::NotFound("not read yet");
  std::optional<uint64_t> n;
  for (;;) {
    count = bucket.Get(CounterKey(f.run));
    n = count.ok() ? ParseNumber(*count, UINT64_MAX) : std::nullopt;
    if (!n || *n >= uint64_t(f.jobs) || std::chrono::steady_clock::now() > give_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (revkv::Status s = bucket.Sync(std::chrono::seconds(10)); !s.ok()) {
      count = s;
      break;
    }
  }
  if (!n || *n != uint64_t(f.jobs)) {
    fail(CounterKey(f.run) + " is " + (count.ok() ? *count : count.status().ToString()) +
         "; want " + std::to_string(f.jobs));
  }
  return problems;
}

// Opens the engine (replicated with --nats) and the jobs bucket.
inline revkv::Result<std::pair<std::unique_ptr<revkv::Engine>, std::shared_ptr<revkv::Bucket>>>
OpenJobs(const Flags& f) {
  revkv::Options options{.path = f.db};
  if (!f.nats.empty()) options.nats.servers = {f.nats};
  auto engine = revkv::Engine::Open(options);
  if (!engine.ok()) return engine.status();
  auto bucket = (*engine)->OpenBucket(kBucket, {.history = kHistory});
  if (!bucket.ok()) return bucket.status();
  return std::pair{std::move(*engine), std::move(*bucket)};
}

}  // namespace jobstate

#endif  // REVKV_EXAMPLES_JOB_STATE_H_
