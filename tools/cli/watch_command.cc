// watch: follows the store as a read-only follower, printing changes.

#include <errno.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "output.h"
#include "signals.h"

namespace revkv::cli {

// The writer holding the store's lock keeps writing while this prints what
// it committed. A stop signal ends it through main, not by the default
// action, so that the follower removes its private directory.
int RunWatch(Context& ctx) {
  using std::chrono::milliseconds;
  StopSignals signals;
  if (int rc = signals.Start(/*keep_ignored=*/false, /*with_child=*/false); rc != kExitOk) {
    return rc;
  }
  // A vanished reader then shows up as a write error.
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<revkv::Engine> engine;
  std::shared_ptr<revkv::Bucket> bucket;
  // A follower opening while the first writer is still creating the store
  // can see it without its meta family and report Corruption; only a
  // persisting Corruption is real.
  int corruption_retries = 0;
  while (bucket == nullptr) {
    revkv::Options options;
    options.path = *ctx.args.db;
    options.read_only_follower = true;
    auto opened = revkv::Engine::Open(options);
    revkv::Status status;
    if (opened.ok()) {
      // --history is not passed: a follower never creates the bucket, and a
      // bucket caught mid-creation would read as having the default setting.
      auto b = (*opened)->OpenBucket(ctx.bucket_name);
      if (b.ok()) {
        engine = std::move(*opened);
        bucket = std::move(*b);
        break;
      }
      status = b.status();
    } else {
      status = opened.status();
    }
    // A follower sees only the buckets that existed when it opened, so a
    // missing bucket means reopening the whole engine.
    const bool retry = status.IsNotFound() || (status.IsCorruption() && ++corruption_retries < 25);
    if (!retry) return signals.Drain() != 0 ? kExitOk : FailStatus(status);
    if (signals.Wait(milliseconds(200)) != 0) return kExitOk;
  }

  constexpr size_t kBatch = 1000;
  // A catch-up can race with the writer rotating its log files; only a
  // failure that persists is reported.
  constexpr int kMaxCatchUpFailures = 20;
  int catch_up_failures = 0;
  uint64_t last_seen = 0;
  while (signals.stopped() == 0) {
    if (revkv::Status s = engine->CatchUp(); !s.ok()) {
      if (signals.Drain() != 0) break;
      if (++catch_up_failures >= kMaxCatchUpFailures) return FailStatus(s);
      if (signals.Wait(milliseconds(100)) != 0) break;
      continue;
    }
    catch_up_failures = 0;
    while (true) {
      auto changes = bucket->ChangesSince(last_seen, kBatch);
      if (!changes.ok()) return signals.Drain() != 0 ? kExitOk : FailStatus(changes.status());
      for (const revkv::Entry& e : *changes) {
        last_seen = e.revision;
        if (!revkv::FilterMatches(ctx.filter, e.key)) continue;
        if (!Write(EntryLine(e, ctx.args.json, /*with_key=*/true)) || fflush(stdout) != 0) {
          return Fail(kExitError,
                      std::string("cannot write to standard output: ") + strerror(errno));
        }
      }
      if (changes->size() < kBatch) break;
    }
    signals.Wait(milliseconds(100));
  }
  return kExitOk;
}

}  // namespace revkv::cli
