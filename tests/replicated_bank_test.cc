// The bank invariant across processes (nats-server 2.12+: transactions are
// atomic batches). Five accounts start at 100 each. Four processes
// (revkv_bank_child, tests/bank_child.cc), each with its own engine and
// replica, move random amounts between random accounts with
// UpdateManyWithRetry; each transfer also bumps its process's ledger key and
// creates a record of itself, in the same transaction. A fifth process
// takes snapshot reads (GetMany, Entries) of the accounts in a loop on its
// own replica and checks that every one sums to 500.
//
// Afterwards, from the final state:
//  - no snapshot ever saw part of a transfer, or a revision going back;
//  - every acknowledged transfer is recorded, at the revision it was
//    acknowledged with, and its four writes took consecutive revisions;
//  - each ledger counts exactly the recorded transfers of its process, and
//    no record exists of a transfer that was refused (an unknown outcome,
//    Timeout/Unavailable, may go either way);
//  - the balances are 100 each plus the effects of exactly the recorded
//    transfers: with no unknown outcome, of the acknowledged ones.
// On one server and on a three-node cluster with an R3 bucket.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "revkv/revkv.h"
#include "tests/nats_server.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::NatsCluster;
using testing::NatsServer;
using testing::TempDir;

constexpr int kAccounts = 5;
constexpr long kStart = 100;
constexpr long kTotal = kAccounts * kStart;
constexpr int kChildren = 4;
constexpr int kTransferSeconds = 8;
constexpr int kMaxTransfers = 1000;  // per child
constexpr char kBucket[] = "bank";

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// A child process whose stdout and stderr go to `log`.
class Child {
 public:
  Child(const std::vector<std::string>& args, std::string log) : log_(std::move(log)) {
    std::string error;
    pid_ = testing::SpawnTiedToThisProcess(args, log_, &error);
    if (pid_ < 0) ADD_FAILURE() << "cannot start " << args[0] << ": " << error;
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Waits until the child printed "ready"; false if it printed "error" or
  // exited first, or at the deadline.
  bool Ready(Clock::time_point deadline) {
    while (Clock::now() < deadline) {
      for (const auto& line : Lines(ReadAll(log_))) {
        if (line == "ready") return true;
        if (line.starts_with("error ")) return false;
      }
      int status = 0;
      if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  // The exit code, 128 + N if killed by signal N, or -1 if it had to be
  // killed at the deadline.
  int Wait(Clock::time_point deadline) {
    int status = 0;
    while (pid_ > 0) {
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (Clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
        return -1;
      }
      std::this_thread::sleep_for(20ms);
    }
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
  }
  std::vector<std::string> Output() const { return Lines(ReadAll(log_)); }
  std::string Log() const { return ReadAll(log_); }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

// A transfer as a child reported it.
struct Transfer {
  int child = 0;
  int attempt = 0;
  int from = 0;
  int to = 0;
  long amount = 0;
  long ledger = 0;              // ack: the ledger value it wrote
  uint64_t revisions[4] = {};   // ack: from, to, ledger, record
};

struct Report {
  std::vector<Transfer> acked, unknown, failed;
  int done_lines = 0;
};

void Parse(const std::vector<std::string>& lines, Report* report) {
  for (const auto& line : lines) {
    std::istringstream in(line);
    std::string word;
    in >> word;
    Transfer t;
    if (word == "ack" || word == "unknown" || word == "failed") {
      in >> t.child >> t.attempt >> t.from >> t.to >> t.amount;
      if (word == "ack") {
        in >> t.ledger >> t.revisions[0] >> t.revisions[1] >> t.revisions[2] >> t.revisions[3];
      }
      if (in.fail()) {
        ADD_FAILURE() << "unparsable line: " << line;
        continue;
      }
      (word == "ack" ? report->acked : word == "unknown" ? report->unknown : report->failed)
          .push_back(t);
    } else if (word == "done") {
      ++report->done_lines;
    }
  }
}

class replicated_bank : public ::testing::Test {
 protected:
  // Runs the bank with the children connected to `child_urls` (round
  // robin), the snapshot process to `snapshot_url`, and the test's own
  // engine to `own_url`, on a bucket with `replicas` stream replicas.
  void RunBank(const std::vector<std::string>& child_urls, const std::string& snapshot_url,
               const std::string& own_url, int replicas) {
    const auto started = Clock::now();
    Options o;
    o.path = dir_.Sub("own");
    o.nats.servers = {own_url};
    o.nats.write_timeout = 10s;
    auto engine = Engine::Open(o);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    auto bucket = (*engine)->OpenBucket(kBucket, {.replicas = replicas});
    ASSERT_TRUE(bucket.ok()) << bucket.status().ToString();
    Txn init;
    for (int i = 0; i < kAccounts; ++i) {
      init.ops.push_back(TxnOp::Create("acct." + std::to_string(i), std::to_string(kStart)));
    }
    auto opened = (*bucket)->Commit(init);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    ASSERT_EQ(opened->revisions.size(), static_cast<size_t>(kAccounts));

    // The snapshot process first, so that it sees every transfer.
    const std::string stop_file = dir_.Sub("stop");
    Child snapshots({REVKV_BANK_CHILD, "snapshot", dir_.Sub("snap"), snapshot_url, kBucket,
                     std::to_string(kAccounts), std::to_string(kTotal), stop_file, "90"},
                    dir_.Sub("snap.log"));
    ASSERT_TRUE(snapshots.Ready(Clock::now() + 30s)) << snapshots.Log();
    std::vector<std::unique_ptr<Child>> children;
    for (int c = 0; c < kChildren; ++c) {
      children.push_back(std::make_unique<Child>(
          std::vector<std::string>{REVKV_BANK_CHILD, "transfer",
                                   dir_.Sub("child" + std::to_string(c)),
                                   child_urls[static_cast<size_t>(c) % child_urls.size()],
                                   kBucket, std::to_string(kAccounts), std::to_string(c),
                                   std::to_string(kTransferSeconds),
                                   std::to_string(kMaxTransfers), std::to_string(1000 + c)},
          dir_.Sub("child" + std::to_string(c) + ".log")));
    }
    Report report;
    for (int c = 0; c < kChildren; ++c) {
      Child& child = *children[static_cast<size_t>(c)];
      EXPECT_EQ(child.Wait(Clock::now() + 90s), 0) << "child " << c << ":\n" << child.Log();
      Parse(child.Output(), &report);
    }
    { std::ofstream(stop_file) << "\n"; }
    EXPECT_EQ(snapshots.Wait(Clock::now() + 30s), 0) << snapshots.Log();
    const auto elapsed = Clock::now() - started;

    // The snapshot process.
    long taken = -1, violations = -1, distinct = -1;
    for (const auto& line : snapshots.Output()) {
      std::istringstream in(line);
      std::string word;
      in >> word;
      if (word == "snapshots") in >> taken >> violations >> distinct;
    }
    EXPECT_EQ(violations, 0) << snapshots.Log();
    EXPECT_GT(taken, 50) << snapshots.Log();
    EXPECT_GT(distinct, 20) << "the snapshots saw too few states: " << snapshots.Log();

    // What the children reported.
    EXPECT_EQ(report.done_lines, kChildren);
    EXPECT_TRUE(report.failed.empty()) << report.failed.size() << " transfers refused; child 0:\n"
                                       << children[0]->Log();
    EXPECT_LE(report.unknown.size(), 2u) << "transfers with an unknown outcome on a healthy server";
    EXPECT_GE(report.acked.size(), 40u) << "too few transfers to mean anything";
    std::map<int, std::vector<const Transfer*>> acked_by_child;
    std::set<uint64_t> firsts;
    for (const Transfer& t : report.acked) {
      acked_by_child[t.child].push_back(&t);
      for (int i = 1; i < 4; ++i) {
        EXPECT_EQ(t.revisions[i], t.revisions[0] + static_cast<uint64_t>(i))
            << "transfer " << t.child << "." << t.attempt << ": not consecutive revisions";
      }
      EXPECT_TRUE(firsts.insert(t.revisions[0]).second)
          << "two transfers acknowledged at revision " << t.revisions[0];
    }
    // A ledger increases with each acknowledged transfer.
    for (auto& [child, transfers] : acked_by_child) {
      for (size_t i = 1; i < transfers.size(); ++i) {
        EXPECT_GT(transfers[i]->ledger, transfers[i - 1]->ledger) << "child " << child;
      }
    }

    // The final state, as the test's own replica has it once caught up.
    ASSERT_TRUE((*bucket)->Sync(10s).ok());
    auto all = (*bucket)->Entries(">");
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    std::map<std::string, Entry> final_state;
    for (const Entry& e : all->entries) final_state[e.key] = e;
    std::map<std::pair<int, int>, const Entry*> records;  // (child, attempt) -> record
    std::map<int, int> records_of;
    for (const auto& [key, e] : final_state) {
      int child = -1, attempt = -1;
      if (std::sscanf(key.c_str(), "tx.%d.%d", &child, &attempt) == 2) {
        records[{child, attempt}] = &e;
        ++records_of[child];
      }
    }
    std::map<std::pair<int, int>, const Transfer*> reported;
    for (const auto* list : {&report.acked, &report.unknown}) {
      for (const Transfer& t : *list) reported[{t.child, t.attempt}] = &t;
    }
    long balances[kAccounts], from_acked[kAccounts];
    for (int i = 0; i < kAccounts; ++i) balances[i] = from_acked[i] = kStart;
    // Every acknowledged transfer is recorded, at its revision.
    for (const Transfer& t : report.acked) {
      auto it = records.find({t.child, t.attempt});
      from_acked[t.from] -= t.amount;
      from_acked[t.to] += t.amount;
      if (it == records.end()) {
        ADD_FAILURE() << "acknowledged transfer " << t.child << "." << t.attempt
                      << " (revision " << t.revisions[3] << ") is lost";
        continue;
      }
      EXPECT_EQ(it->second->revision, t.revisions[3]);
      EXPECT_EQ(it->second->value, std::to_string(t.from) + " " + std::to_string(t.to) + " " +
                                       std::to_string(t.amount));
    }
    // Every record is of a transfer that was acknowledged or whose outcome is
    // unknown; the balances follow the records.
    int unknown_applied = 0;
    for (const auto& [id, e] : records) {
      auto it = reported.find(id);
      if (it == reported.end()) {
        ADD_FAILURE() << "a record of transfer " << id.first << "." << id.second
                      << " that was refused or never reported: " << e->value;
        continue;
      }
      const Transfer& t = *it->second;
      if (t.ledger == 0) ++unknown_applied;  // an unknown outcome that committed
      balances[t.from] -= t.amount;
      balances[t.to] += t.amount;
    }
    long sum = 0;
    for (int i = 0; i < kAccounts; ++i) {
      const std::string key = "acct." + std::to_string(i);
      ASSERT_TRUE(final_state.count(key)) << key << " is gone";
      const long balance = std::stol(final_state[key].value);
      sum += balance;
      EXPECT_EQ(balance, balances[i]) << key << " does not match the recorded transfers";
      if (report.unknown.empty()) {
        EXPECT_EQ(balance, from_acked[i]) << key << " does not match the acknowledged transfers";
      }
    }
    EXPECT_EQ(sum, kTotal);
    // Each ledger counts its child's committed transfers.
    for (int c = 0; c < kChildren; ++c) {
      const std::string key = "ledger." + std::to_string(c);
      const long acked = static_cast<long>(acked_by_child[c].size());
      const long expected = records_of[c];
      if (expected == 0) {
        EXPECT_FALSE(final_state.count(key)) << key;
        continue;
      }
      ASSERT_TRUE(final_state.count(key)) << key << " is missing";
      EXPECT_EQ(std::stol(final_state[key].value), expected) << key;
      EXPECT_GE(expected, acked) << key;
      if (report.unknown.empty()) {
        EXPECT_EQ(std::stol(final_state[key].value), acked) << key;
      }
    }
    std::printf("bank: %zu transfers acknowledged (%zu unknown, %d of them committed, %zu "
                "refused); %ld snapshots at %ld distinct revisions, %ld violations; %lld ms\n",
                report.acked.size(), report.unknown.size(), unknown_applied,
                report.failed.size(), taken, distinct, violations,
                static_cast<long long>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()));
  }

  TempDir dir_;
};

TEST_F(replicated_bank, SingleServerKeepsTheTotalAndEveryAcknowledgedTransfer) {
  if (!NatsServer::VersionAtLeast(2, 12)) GTEST_FAIL() << "runs on 2.12+ only (see CMakeLists.txt)";
  NatsServer server;
  ASSERT_TRUE(server.Start()) << server.error();
  RunBank({server.url()}, server.url(), server.url(), 1);
}

TEST_F(replicated_bank, R3ClusterKeepsTheTotalAndEveryAcknowledgedTransfer) {
  if (!NatsServer::VersionAtLeast(2, 12)) GTEST_FAIL() << "runs on 2.12+ only (see CMakeLists.txt)";
  NatsCluster cluster;
  ASSERT_TRUE(cluster.Start()) << cluster.error();
  // The children on every node; the snapshots on a node of their own.
  RunBank(cluster.urls(), cluster.node(1).url(), cluster.node(2).url(), 3);
}

}  // namespace
}  // namespace revkv
