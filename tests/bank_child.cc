// revkv_bank_child: one process of replicated_bank_test, with its own
// engine, replica and connection to a bucket that holds the accounts
// "acct.0".."acct.<N-1>".
//
//   revkv_bank_child transfer DIR URL BUCKET ACCOUNTS CHILD SECONDS MAX SEED
//   revkv_bank_child snapshot DIR URL BUCKET ACCOUNTS TOTAL STOP_FILE MAX_SECONDS
//
// transfer: for SECONDS (at most MAX transfers), moves a random amount
// (1..30; balances may go negative) between two random distinct accounts,
// each transfer one UpdateManyWithRetry over four keys: both accounts, the
// child's ledger "ledger.<CHILD>" (the number of its transfers that
// committed) and a record of the transfer itself, "tx.<CHILD>.<ATTEMPT>"
// (value "FROM TO AMOUNT", created by the transaction). One line per
// transfer on stdout:
//   ack CHILD ATTEMPT FROM TO AMOUNT LEDGER REV_FROM REV_TO REV_LEDGER REV_TX
//   unknown CHILD ATTEMPT FROM TO AMOUNT STATUS   (Timeout/Unavailable: may have committed)
//   failed CHILD ATTEMPT FROM TO AMOUNT STATUS    (certainly not committed)
// then "done CHILD ACKED UNKNOWN FAILED".
//
// snapshot: until STOP_FILE exists (or MAX_SECONDS pass), reads every
// account in one snapshot, alternately with GetMany and with
// Entries("acct.>"), and checks that the balances sum to TOTAL, that every
// account is there, and that snapshot revisions never go back. Syncs its
// replica every 25 snapshots, and pauses 0.5 ms between snapshots. One line per violation (at most 20):
//   violation REVISION KIND VALUES...
// then "snapshots COUNT VIOLATIONS DISTINCT_REVISIONS".
//
// Every line is written with one write(2).

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "revkv/revkv.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

void Say(const std::string& line) {
  const std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) _exit(3);
    done += static_cast<size_t>(n);
  }
}

std::string OneLine(const revkv::Status& s) {
  std::string text = s.ToString();
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  return text;
}

std::string Account(int i) { return "acct." + std::to_string(i); }

// A balance as stored, or nullopt if the value is not a number.
std::optional<long> Balance(const std::string& value) {
  char* end = nullptr;
  const long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || end == nullptr || *end != '\0') return std::nullopt;
  return v;
}

std::shared_ptr<revkv::Bucket> Open(const std::string& dir, const std::string& url,
                                    const std::string& bucket_name,
                                    std::unique_ptr<revkv::Engine>* engine) {
  revkv::Options o;
  o.path = dir;
  o.nats.servers = {url};
  o.nats.write_timeout = 10s;  // a loaded machine: rather slow than unknown
  auto e = revkv::Engine::Open(o);
  if (!e.ok()) {
    Say("error " + OneLine(e.status()));
    return nullptr;
  }
  auto b = (*e)->OpenBucket(bucket_name, {.create_if_missing = false});
  if (!b.ok()) {
    Say("error " + OneLine(b.status()));
    return nullptr;
  }
  *engine = std::move(*e);
  return *b;
}

int Transfer(revkv::Bucket& bucket, int accounts, int child, int seconds, int max,
             uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::string ledger = "ledger." + std::to_string(child);
  const auto end = Clock::now() + std::chrono::seconds(seconds);
  int acked = 0, unknown = 0, failed = 0;
  for (int attempt = 1; attempt <= max && Clock::now() < end; ++attempt) {
    const int from = std::uniform_int_distribution<int>(0, accounts - 1)(rng);
    const int to = (from + 1 + std::uniform_int_distribution<int>(0, accounts - 2)(rng)) % accounts;
    const long amount = std::uniform_int_distribution<long>(1, 30)(rng);
    const std::string tx = "tx." + std::to_string(child) + "." + std::to_string(attempt);
    const std::string what = std::to_string(child) + " " + std::to_string(attempt) + " " +
                             std::to_string(from) + " " + std::to_string(to) + " " +
                             std::to_string(amount);
    long ledger_written = 0;
    bool bad_value = false;
    auto r = bucket.UpdateManyWithRetry(
        {Account(from), Account(to), ledger, tx},
        [&](const std::vector<std::optional<std::string>>& v)
            -> std::optional<std::vector<revkv::KeyChange>> {
          const std::optional<long> f = v[0] ? Balance(*v[0]) : std::nullopt;
          const std::optional<long> t = v[1] ? Balance(*v[1]) : std::nullopt;
          const std::optional<long> n = v[2] ? Balance(*v[2]) : 0L;
          if (!f || !t || !n || v[3]) {
            bad_value = true;  // an account missing, or this transfer already recorded
            return std::nullopt;
          }
          bad_value = false;
          ledger_written = *n + 1;
          return std::vector<revkv::KeyChange>{
              revkv::KeyChange::Put(std::to_string(*f - amount)),
              revkv::KeyChange::Put(std::to_string(*t + amount)),
              revkv::KeyChange::Put(std::to_string(ledger_written)),
              revkv::KeyChange::Put(std::to_string(from) + " " + std::to_string(to) + " " +
                                    std::to_string(amount))};
        },
        {.max_attempts = 1000, .deadline = 30s});
    if (r.ok() && r->written && r->revisions.size() == 4) {
      ++acked;
      Say("ack " + what + " " + std::to_string(ledger_written) + " " +
          std::to_string(r->revisions[0]) + " " + std::to_string(r->revisions[1]) + " " +
          std::to_string(r->revisions[2]) + " " + std::to_string(r->revisions[3]));
    } else if (r.ok()) {
      ++failed;
      Say("failed " + what + (bad_value ? " unexpected-state" : " not-written"));
    } else if (r.status().IsTimeout() || r.status().IsUnavailable()) {
      ++unknown;
      Say("unknown " + what + " " + OneLine(r.status()));
    } else {
      ++failed;
      Say("failed " + what + " " + OneLine(r.status()));
    }
  }
  Say("done " + std::to_string(child) + " " + std::to_string(acked) + " " +
      std::to_string(unknown) + " " + std::to_string(failed));
  return 0;
}

int Snapshot(revkv::Bucket& bucket, int accounts, long total, const std::string& stop_file,
             int max_seconds) {
  std::vector<std::string> keys;
  for (int i = 0; i < accounts; ++i) keys.push_back(Account(i));
  const auto end = Clock::now() + std::chrono::seconds(max_seconds);
  long snapshots = 0, violations = 0;
  uint64_t last_revision = 0;
  std::set<uint64_t> revisions;
  auto violation = [&](uint64_t revision, const std::string& kind, const std::string& values) {
    if (++violations <= 20) {
      Say("violation " + std::to_string(revision) + " " + kind + " " + values);
    }
  };
  struct stat st;
  while (Clock::now() < end && stat(stop_file.c_str(), &st) != 0) {
    uint64_t revision = 0;
    std::vector<std::optional<std::string>> values;
    if (snapshots % 2 == 0) {
      auto s = bucket.GetMany(keys);
      if (!s.ok()) {
        violation(0, "error", OneLine(s.status()));
        continue;
      }
      revision = s->revision;
      for (const auto& k : s->keys) {
        values.push_back(k.entry ? std::optional<std::string>(k.entry->value) : std::nullopt);
      }
    } else {
      auto s = bucket.Entries("acct.>");
      if (!s.ok()) {
        violation(0, "error", OneLine(s.status()));
        continue;
      }
      revision = s->revision;
      for (const auto& e : s->entries) values.push_back(e.value);
    }
    ++snapshots;
    revisions.insert(revision);
    std::string shown;
    long sum = 0;
    bool complete = values.size() == keys.size();
    for (const auto& v : values) {
      shown += (shown.empty() ? "" : ",") + v.value_or("<absent>");
      const std::optional<long> b = v ? Balance(*v) : std::nullopt;
      if (!b) complete = false;
      sum += b.value_or(0);
    }
    if (!complete) {
      violation(revision, "incomplete", shown);
    } else if (sum != total) {
      violation(revision, "sum=" + std::to_string(sum), shown);
    }
    if (revision < last_revision) {
      violation(revision, "revision-went-back-from-" + std::to_string(last_revision), shown);
    }
    last_revision = std::max(last_revision, revision);
    if (snapshots % 25 == 0) (void)bucket.Sync(5s);
    std::this_thread::sleep_for(500us);  // leaves the machine to the writers
  }
  Say("snapshots " + std::to_string(snapshots) + " " + std::to_string(violations) + " " +
      std::to_string(revisions.size()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (!((mode == "transfer" && argc == 10) || (mode == "snapshot" && argc == 9))) {
    std::fprintf(stderr,
                 "usage: %s transfer DIR URL BUCKET ACCOUNTS CHILD SECONDS MAX SEED\n"
                 "       %s snapshot DIR URL BUCKET ACCOUNTS TOTAL STOP_FILE MAX_SECONDS\n",
                 argv[0], argv[0]);
    return 1;
  }
  std::unique_ptr<revkv::Engine> engine;
  auto bucket = Open(argv[2], argv[3], argv[4], &engine);
  if (!bucket) return 2;
  const int accounts = std::atoi(argv[5]);
  if (accounts < 2) return 1;
  if (!bucket->Sync(10s).ok()) {
    Say("error the replica did not catch up");
    return 2;
  }
  Say("ready");
  if (mode == "transfer") {
    return Transfer(*bucket, accounts, std::atoi(argv[6]), std::atoi(argv[7]), std::atoi(argv[8]),
                    std::strtoull(argv[9], nullptr, 10));
  }
  return Snapshot(*bucket, accounts, std::atol(argv[6]), argv[7], std::atoi(argv[8]));
}
