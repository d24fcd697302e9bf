// The seed's job-state service, optimistic version: every change to a job
// record is one Bucket::UpdateWithRetry. It reads the record and its
// revision, computes the next record, and writes it only if the revision is
// still the same (compare-and-swap); on a conflict it reads again and
// retries. No lock is held, so a worker that stalls blocks nobody.
//
//   job_state_occ --db DIR [--nats URL] [--workers N] [--jobs M] [--run ID] [--timeout S]
//
// It submits M jobs, then N worker threads each claim queued jobs
// (queued -> running, owned by the worker), advance them in four steps, and
// mark them done; every fifth job fails its first attempt and is claimed
// again. At the end it checks the invariants (job_state.h: Verify), prints a
// summary and exits 0 only if they all hold.
//
// Locally, conflicts stay at 0: threads of one process that update the same
// key are queued by UpdateWithRetry itself, so a losing claim sees the
// winner's record and declines instead of conflicting. Run two processes
// against one server to see real conflicts and retries:
//   job_state_occ --db /tmp/a --nats nats://127.0.0.1:4222 &
//   job_state_occ --db /tmp/b --nats nats://127.0.0.1:4222
// Each submits its own jobs; the workers of both take any queued job.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "job_state.h"
#include "revkv/revkv.h"

namespace {

using jobstate::JobState;

struct Counters {
  std::atomic<uint64_t> writes{0};    // records written
  std::atomic<uint64_t> claims{0};    // jobs claimed
  std::atomic<uint64_t> declined{0};  // claims given up: another worker was first
  std::atomic<uint64_t> retries{0};   // attempts beyond the first: compare-and-swap conflicts
};

// One optimistic change of `key`. `step` maps the current record to the next
// one, or to std::nullopt to decline; UpdateWithRetry may call it several
// times, each time on a newer record. Returns the record written, or
// std::nullopt if `step` declined.
revkv::Result<std::optional<JobState>> Change(
    revkv::Bucket& bucket, const std::string& key,
    const std::function<std::optional<JobState>(const JobState&)>& step, Counters& counters) {
  revkv::Status bad;  // why the record could not be read, if it could not
  std::optional<JobState> written;
  auto outcome = bucket.UpdateWithRetry(
      key,
      [&](const std::optional<std::string>& current) -> std::optional<std::string> {
        bad = revkv::Status::OK();
        written.reset();
        if (!current) {
          bad = revkv::Status::NotFound("job " + key + " was deleted");
          return std::nullopt;
        }
        auto state = jobstate::Decode(*current);
        if (!state.ok()) {
          bad = state.status();
          return std::nullopt;
        }
        written = step(*state);
        if (!written) return std::nullopt;  // decline: leave the record as it is
        return jobstate::Encode(*written);
      },
      revkv::RetryPolicy{.deadline = std::chrono::seconds(10)});
  if (!outcome.ok()) return outcome.status();  // Conflict: gave up after many retries
  if (!bad.ok()) return bad;
  counters.retries += outcome->attempts - 1;
  if (!outcome->written) return std::optional<JobState>();
  ++counters.writes;
  return written;
}

// Claims the job at `key` and runs it to the end. False: another worker
// claimed it first.
revkv::Result<bool> Work(revkv::Bucket& bucket, const std::string& key, const std::string& me,
                         Counters& counters) {
  // The claim. Between our scan and this update another worker may have
  // claimed the job: then Claim sees a running record and returns
  // std::nullopt, so the mutator declines and UpdateWithRetry writes nothing
  // (outcome.written == false). That is a normal race lost, not an error.
  auto claimed = Change(
      bucket, key, [&](const JobState& s) { return jobstate::Claim(s, me); }, counters);
  if (!claimed.ok()) return claimed.status();
  if (!*claimed) {
    ++counters.declined;
    return false;
  }
  ++counters.claims;
  const int n = jobstate::ParseJobKey(key)->second;
  const int attempt = (*claimed)->attempts;

  // The job is ours now: Advance and Finish decline only if the record is no
  // longer running under our name, which nobody else may do.
  auto lost = [&] { return revkv::Status::Conflict("job " + key + " is no longer ours"); };
  bool ok = true;
  for (int progress = 0; progress < 100; progress += jobstate::kStep) {
    jobstate::DoSomeWork();
    if (progress == 50 && jobstate::FailsThisAttempt(n, attempt)) {
      ok = false;
      break;
    }
    auto advanced = Change(
        bucket, key, [&](const JobState& s) { return jobstate::Advance(s, me); }, counters);
    if (!advanced.ok()) return advanced.status();
    if (!*advanced) return lost();
  }
  auto finished = Change(
      bucket, key, [&](const JobState& s) { return jobstate::Finish(s, me, ok); }, counters);
  if (!finished.ok()) return finished.status();
  if (!*finished) return lost();
  if (!ok) return true;  // failed: back in the pool for another attempt

  // The run's done-counter: a hot key that every worker of every process
  // increments, the textbook lost update if done without compare-and-swap.
  const std::string counter = jobstate::CounterKey(jobstate::ParseJobKey(key)->first);
  revkv::Status bad;
  auto counted = bucket.UpdateWithRetry(
      counter,
      [&](const std::optional<std::string>& current) -> std::optional<std::string> {
        auto count = current ? jobstate::ParseNumber(*current, UINT64_MAX) : std::nullopt;
        bad = count ? revkv::Status::OK() : revkv::Status::Corruption(counter + " is not a number");
        if (!count) return std::nullopt;
        return std::to_string(*count + 1);
      },
      revkv::RetryPolicy{.deadline = std::chrono::seconds(10)});
  if (!counted.ok()) return counted.status();
  if (!bad.ok()) return bad;
  counters.retries += counted->attempts - 1;
  ++counters.writes;
  return true;
}

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
  revkv::Bucket& bucket = *opened->second;
  if (revkv::Status s = jobstate::Submit(bucket, f); !s.ok()) {
    std::fprintf(stderr, "submit: %s\n", s.ToString().c_str());
    return 1;
  }

  Counters counters;
  const auto start = std::chrono::steady_clock::now();
  std::vector<revkv::Status> results(f.workers);
  std::vector<std::thread> workers;
  for (int i = 0; i < f.workers; ++i) {
    workers.emplace_back([&, i] {
      const std::string me = f.run + "/w" + std::to_string(i);
      results[i] = jobstate::RunWorker(bucket, f, start + f.timeout, [&](const std::string& key) {
        return Work(bucket, key, me, counters);
      });
    });
  }
  for (auto& t : workers) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

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
      "job_state_occ: run %s, %d jobs, %d workers, %s: %.3f s, %llu writes, %.0f writes/s\n",
      f.run.c_str(), f.jobs, f.workers, f.nats.empty() ? "local" : f.nats.c_str(), seconds,
      static_cast<unsigned long long>(counters.writes.load()), counters.writes.load() / seconds);
  std::printf(
      "  claims %llu, declined %llu (another worker was first), retries %llu "
      "(compare-and-swap conflicts); %d of this run's jobs done by other processes\n",
      static_cast<unsigned long long>(counters.claims.load()),
      static_cast<unsigned long long>(counters.declined.load()),
      static_cast<unsigned long long>(counters.retries.load()), elsewhere);
  if (problems == 0 && errors == 0) {
    std::printf("  invariants: OK\n");
  } else {
    std::printf("  invariants: FAILED (%d violations, %d workers stopped by errors)\n", problems,
                errors);
  }
  return problems == 0 && errors == 0 ? 0 : 1;
}
