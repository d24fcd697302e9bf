// The seed's job-state service, lock version: a worker holds a job's lease
// lock from its claim to its last write, and reads and writes the record with
// plain Get and Put while it does. The run's done-counter is a
// read-modify-write under a lock of its own.
//
//   job_state_lock --db DIR [--nats URL] [--workers N] [--jobs M] [--run ID] [--timeout S]
//
// It submits M jobs, then N worker threads each claim queued jobs
// (queued -> running, owned by the worker), advance them in four steps, and
// mark them done; every fifth job fails its first attempt and is claimed
// again. At the end it checks the invariants (job_state.h: Verify), prints a
// summary and exits 0 only if they all hold.
//
// The idioms:
//   - the lock of job "job.R.N" is named like the job (locks live in the
//     engine's own locks bucket, so the names do not clash);
//   - after acquiring, Sync before reading: the lock orders us after the
//     previous holder, but our replica may not have applied its last write;
//   - every write stores the lock's fencing token in the record (fence=T).
//     Tokens only grow, so a write from a holder whose lease ran out, made
//     after a newer holder's, shows as a token going down in the job's
//     history. In a local store the engine also checks the token atomically
//     with the write (WriteOptions::fence) and refuses a stale one with
//     LockLost.
// A worker that dies leaves its job running. A real service would claim such
// a job once its lock is free again (the lease ran out); this demo keeps to
// queued and failed jobs, so here the fence is a check and an audit trail.
//
// With --nats the locks are replicated too, so several processes share them:
//   job_state_lock --db /tmp/a --nats nats://127.0.0.1:4222 &
//   job_state_lock --db /tmp/b --nats nats://127.0.0.1:4222
// Each submits its own jobs; the workers of both take any queued job.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "job_state.h"
#include "revkv/revkv.h"

namespace {

using Clock = std::chrono::steady_clock;
using jobstate::JobState;

// Long enough to outlast any pause of a worker (the handle renews it every
// lease/3 in the background); a crashed worker's lock frees after it.
constexpr std::chrono::milliseconds kLease{5000};
constexpr std::chrono::milliseconds kWait{10000};  // the most we wait for a lock
constexpr std::chrono::milliseconds kSync{5000};

struct Counters {
  std::atomic<uint64_t> writes{0};    // records written
  std::atomic<uint64_t> claims{0};    // jobs claimed
  std::atomic<uint64_t> locks{0};     // locks acquired
  std::atomic<uint64_t> busy{0};      // job locks found held: skipped, another worker runs it
  std::atomic<uint64_t> declined{0};  // job locked, but no longer claimable when read
  std::atomic<uint64_t> waits{0};     // counter lock found held: waited for it
  std::atomic<int64_t> waited_us{0};  // total time spent waiting for it
};

class Worker {
 public:
  Worker(revkv::Engine& engine, revkv::Bucket& bucket, bool replicated, std::string me,
         Counters& counters)
      : engine_(engine),
        bucket_(bucket),
        replicated_(replicated),
        me_(std::move(me)),
        counters_(counters) {}

  // Claims the job at `key` and runs it to the end. False: another worker
  // holds it or has already taken it.
  revkv::Result<bool> Work(const std::string& key) {
    // Holding the job's lock is what makes the job ours. TryAcquire: a job
    // that someone else is running is skipped, not waited for.
    auto lock = engine_.TryAcquire(key, kLease);
    if (lock.status().IsBusy()) {
      ++counters_.busy;
      return false;
    }
    if (!lock.ok()) return lock.status();
    ++counters_.locks;

    auto state = ReadLocked(key);
    if (!state.ok()) return state.status();
    auto claimed = jobstate::Claim(*state, me_);
    if (!claimed) {  // done, or failed too often, before we got the lock
      ++counters_.declined;
      return false;  // the handle's destructor releases the lock
    }
    ++counters_.claims;
    JobState job = *claimed;
    if (revkv::Status s = WriteLocked(**lock, key, &job); !s.ok()) return s;

    // Nobody else writes the record while we hold the lock, so the next
    // states are computed from our own copy; no need to read again.
    const int n = jobstate::ParseJobKey(key)->second;
    bool ok = true;
    while (job.progress < 100) {
      jobstate::DoSomeWork();
      if (job.progress == 50 && jobstate::FailsThisAttempt(n, job.attempts)) {
        ok = false;
        break;
      }
      job = *jobstate::Advance(job, me_);
      if (revkv::Status s = WriteLocked(**lock, key, &job); !s.ok()) return s;
    }
    job = *jobstate::Finish(job, me_, ok);
    if (revkv::Status s = WriteLocked(**lock, key, &job); !s.ok()) return s;
    // Release explicitly to see its status: LockLost means the lease ran out
    // while we worked, so for a while our writes were not protected.
    if (revkv::Status s = (*lock)->Release(); !s.ok()) return s;
    if (!ok) return true;  // failed: back in the pool for another attempt
    if (revkv::Status s = CountDone(jobstate::CounterKey(jobstate::ParseJobKey(key)->first));
        !s.ok()) {
      return s;
    }
    return true;
  }

 private:
  // Reads the job under its lock.
  revkv::Result<JobState> ReadLocked(const std::string& key) {
    // The lock makes us the only writer from now on, but reads come from the
    // local replica, which may not have applied the previous holder's last
    // write yet (it was acknowledged by the server, then the lock released).
    // Sync waits until the replica has everything the server had, so the Get
    // sees the job as it is. (A local store is always current: no cost.)
    if (revkv::Status s = bucket_.Sync(kSync); !s.ok()) return s;
    auto value = bucket_.Get(key);
    if (!value.ok()) return value.status();
    return jobstate::Decode(*value);
  }

  // Writes `job` with the lock's fencing token in it.
  revkv::Status WriteLocked(revkv::Lock& lock, const std::string& key, JobState* job) {
    job->fence = lock.fencing_token();  // the audit trail: see the file comment
    // lost() catches a lease we know is gone. It cannot catch one lost a
    // moment ago: only a check inside the write can.
    if (lock.lost()) return revkv::Status::LockLost("lost the lock of " + key + " mid-job");
    revkv::WriteOptions options;
    // A local store makes that check: the write commits only if the token is
    // still the lock's current one, atomically. Replicated buckets refuse
    // fenced writes (InvalidArgument), so there the recorded fence is all.
    if (!replicated_) options.fence = revkv::Fence{key, lock.fencing_token()};
    auto rev = bucket_.Put(key, jobstate::Encode(*job), options);
    if (!rev.ok()) return rev.status();
    ++counters_.writes;
    return revkv::Status::OK();
  }

  // Adds one to the counter `key`: the classic read-modify-write under a
  // lock. Every worker of every process does it, so here we do wait.
  revkv::Status CountDone(const std::string& key) {
    auto lock = engine_.TryAcquire(key, kLease);
    if (lock.status().IsBusy()) {
      ++counters_.waits;
      const auto start = Clock::now();
      lock = engine_.Acquire(key, kLease, kWait);
      counters_.waited_us +=
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
    }
    if (!lock.ok()) return lock.status();  // Timeout: held by others for all of kWait
    ++counters_.locks;
    if (revkv::Status s = bucket_.Sync(kSync); !s.ok()) return s;  // as in ReadLocked
    auto value = bucket_.Get(key);
    if (!value.ok()) return value.status();
    auto count = jobstate::ParseNumber(*value, UINT64_MAX);
    if (!count) return revkv::Status::Corruption(key + " is not a number: " + *value);
    revkv::WriteOptions options;
    if (!replicated_) options.fence = revkv::Fence{key, (*lock)->fencing_token()};
    auto rev = bucket_.Put(key, std::to_string(*count + 1), options);
    if (!rev.ok()) return rev.status();
    ++counters_.writes;
    return (*lock)->Release();
  }

  revkv::Engine& engine_;
  revkv::Bucket& bucket_;
  const bool replicated_;
  const std::string me_;
  Counters& counters_;
};

}  // namespace

int main(int argc, char** argv) {
  auto flags = jobstate::ParseFlags(argc, argv);
  if (!flags) return 2;
  const jobstate::Flags& f = *flags;
  auto opened = jobstate::OpenJobs(f);
  if (!opened.ok()) {
    std::fprintf(stderr, "open %s: %s\n", f.db.c_str(), opened.status().ToString().c_str());
    return 1;
  }
  revkv::Engine& engine = *opened->first;
  revkv::Bucket& bucket = *opened->second;
  if (revkv::Status s = jobstate::Submit(bucket, f); !s.ok()) {
    std::fprintf(stderr, "submit: %s\n", s.ToString().c_str());
    return 1;
  }

  Counters counters;
  const auto start = Clock::now();
  std::vector<revkv::Status> results(f.workers);
  std::vector<std::thread> threads;
  for (int i = 0; i < f.workers; ++i) {
    threads.emplace_back([&, i] {
      Worker worker(engine, bucket, !f.nats.empty(), f.run + "/w" + std::to_string(i), counters);
      results[i] = jobstate::RunWorker(bucket, f, start + f.timeout,
                                       [&](const std::string& key) { return worker.Work(key); });
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  int errors = 0;
  for (int i = 0; i < f.workers; ++i) {
    if (!results[i].ok()) {
      std::fprintf(stderr, "worker %d: %s\n", i, results[i].ToString().c_str());
      ++errors;
    }
  }
  int elsewhere = 0;
  const int problems = jobstate::Verify(bucket, f, &elsewhere);
  if (revkv::Status s = jobstate::EndRun(bucket, f); !s.ok()) {
    std::fprintf(stderr, "end of run: %s\n", s.ToString().c_str());
    ++errors;
  }
  std::printf(
      "job_state_lock: run %s, %d jobs, %d workers, %s: %.3f s, %llu writes, %.0f writes/s\n",
      f.run.c_str(), f.jobs, f.workers, f.nats.empty() ? "local" : f.nats.c_str(), seconds,
      static_cast<unsigned long long>(counters.writes.load()), counters.writes.load() / seconds);
  std::printf(
      "  claims %llu, locks acquired %llu; job locks busy %llu (skipped), declined %llu "
      "(locked but already taken); counter lock waits %llu (%.3f s waiting); "
      "%d of this run's jobs done by other processes\n",
      static_cast<unsigned long long>(counters.claims.load()),
      static_cast<unsigned long long>(counters.locks.load()),
      static_cast<unsigned long long>(counters.busy.load()),
      static_cast<unsigned long long>(counters.declined.load()),
      static_cast<unsigned long long>(counters.waits.load()), counters.waited_us.load() / 1e6,
      elsewhere);
  if (problems == 0 && errors == 0) {
    std::printf("  invariants: OK\n");
  } else {
    std::printf("  invariants: FAILED (%d violations, %d workers stopped by errors)\n", problems,
                errors);
  }
  return problems == 0 && errors == 0 ? 0 : 1;
}
