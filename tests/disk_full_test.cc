// A full disk: writes to a store on a small tmpfs fail with IOError naming
// the cause, leave nothing half written, and succeed again once space is
// freed, in the same process and through the same Engine.
//
// The store lives under a directory named "lock", which once made the error
// mapping report the full disk as "store held by another process". Each case
// runs in a forked child with a private mount namespace (root only): the
// tmpfs is invisible to the rest of the machine and vanishes with the child.
// The child reports facts and problems through a pipe; the assertions are
// made here, in the parent.

#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "revkv/revkv.h"
#include "tests/crash_value.h"
#include "tests/test_util.h"

namespace revkv {
namespace {

using revkv::testing::Fnv1a64;
using revkv::testing::Hex16;
using revkv::testing::TempDir;

constexpr char kBucket[] = "fill";
constexpr int kHistory = 3;
constexpr int kKeys = 48;                 // keys are rewritten, so history records are staged
constexpr size_t kValueBytes = 16 << 10;  // incompressible, so the disk fills for real
constexpr char kTmpfsSize[] = "size=16m";
constexpr int kMaxWrites = 4000;  // far more than the tmpfs holds
constexpr int kRounds = 2;        // the disk fills, is freed, and fills again
constexpr int kWritesWhileFull = 6;
constexpr int kWritesAfterFreeing = 20;
constexpr auto kChildDeadline = std::chrono::seconds(120);

// What the child found: named facts and a list of problems. In the child,
// each is sent as soon as it is known, so that a crash loses none.
class Report {
 public:
  void StreamTo(int fd) { fd_ = fd; }
  void Fact(const std::string& name, const std::string& value) {
    facts_[name] = value;
    Send("fact\t" + name + "\t" + OneLine(value) + "\n");
  }
  void Problem(const std::string& what) {
    problems_.push_back(what);
    Send("problem\t" + OneLine(what) + "\n");
  }

  static Report Parse(const std::string& text) {
    Report r;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("fact\t", 0) == 0) {
        size_t tab = line.find('\t', 5);
        if (tab == std::string::npos) continue;
        r.facts_[line.substr(5, tab - 5)] = line.substr(tab + 1);
      } else if (line.rfind("problem\t", 0) == 0) {
        r.problems_.push_back(line.substr(8));
      }
    }
    return r;
  }

  std::string Get(const std::string& name) const {
    auto it = facts_.find(name);
    return it == facts_.end() ? "<missing fact " + name + ">" : it->second;
  }
  bool Has(const std::string& name) const { return facts_.count(name) != 0; }
  const std::map<std::string, std::string>& facts() const { return facts_; }
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  void Send(const std::string& line) const {
    size_t done = 0;
    while (fd_ >= 0 && done < line.size()) {
      ssize_t w = write(fd_, line.data() + done, line.size() - done);
      if (w <= 0) _exit(3);
      done += static_cast<size_t>(w);
    }
  }
  static std::string OneLine(std::string s) {
    for (char& c : s) {
      if (c == '\n' || c == '\t') c = ' ';
    }
    return s;
  }
  int fd_ = -1;
  std::map<std::string, std::string> facts_;
  std::vector<std::string> problems_;
};

std::string CodeAndMessage(const Status& s) {
  return std::string(CodeName(s.code())) + ": " + std::string(s.message());
}

// A deterministic incompressible value for write number `n`.
std::string ValueFor(const std::string& key, int n) {
  std::mt19937_64 rng(static_cast<uint64_t>(n) * 7919 + 17);
  std::string v = key + "|" + std::to_string(n) + "|";
  while (v.size() < kValueBytes) {
    uint64_t x = rng();
    v.append(reinterpret_cast<const char*>(&x), sizeof(x));
  }
  v.resize(kValueBytes);
  return v;
}

// Every acknowledged write, per key, as far as the history setting keeps it.
struct Acked {
  uint64_t revision;
  std::string checksum;
};
using Model = std::map<std::string, std::vector<Acked>>;

void Acknowledge(Model* model, const std::string& key, uint64_t revision,
                 const std::string& value) {
  std::vector<Acked>& revs = (*model)[key];
  revs.push_back({revision, Hex16(Fnv1a64(value))});
  while (revs.size() > static_cast<size_t>(kHistory)) revs.erase(revs.begin());
}

// Checks the bucket against the acknowledged writes: every one reads back
// exactly (latest entry, history, revision log), and `absent` keys, whose
// only writes failed, are not there at all.
void Verify(const std::string& phase, Bucket& bucket, const Model& model, uint64_t last_revision,
            const std::vector<std::string>& absent, Report* report) {
  auto problem = [&](const std::string& what) { report->Problem(phase + ": " + what); };
  if (bucket.LastRevision() != last_revision) {
    problem("LastRevision() is " + std::to_string(bucket.LastRevision()) +
            ", the last acknowledged is " + std::to_string(last_revision));
  }
  std::vector<uint64_t> want_log;
  for (const auto& [key, revs] : model) {
    for (const Acked& a : revs) want_log.push_back(a.revision);
    auto entry = bucket.GetEntry(key);
    if (!entry.ok()) {
      problem("GetEntry(" + key + "): " + entry.status().ToString());
      continue;
    }
    if (entry->revision != revs.back().revision ||
        Hex16(Fnv1a64(entry->value)) != revs.back().checksum) {
      problem(key + " reads revision " + std::to_string(entry->revision) + " with checksum " +
              Hex16(Fnv1a64(entry->value)) + "; acknowledged " +
              std::to_string(revs.back().revision) + " " + revs.back().checksum);
    }
    auto history = bucket.History(key);
    if (!history.ok()) {
      problem("History(" + key + "): " + history.status().ToString());
      continue;
    }
    std::string got, want;
    for (const Entry& e : *history)
      got += std::to_string(e.revision) + ":" + Hex16(Fnv1a64(e.value)) + " ";
    for (const Acked& a : revs) want += std::to_string(a.revision) + ":" + a.checksum + " ";
    if (got != want) problem("History(" + key + ") is [" + got + "], acknowledged [" + want + "]");
  }
  std::sort(want_log.begin(), want_log.end());
  auto changes = bucket.ChangesSince(0, size_t{1} << 20);
  if (!changes.ok()) {
    problem("ChangesSince(0): " + changes.status().ToString());
  } else {
    std::vector<uint64_t> got_log;
    for (const Entry& e : *changes) got_log.push_back(e.revision);
    if (got_log != want_log) {
      problem("the revision log holds " + std::to_string(got_log.size()) +
              " revisions, the acknowledged writes retain " + std::to_string(want_log.size()));
    }
  }
  for (const std::string& key : absent) {
    auto entry = bucket.GetEntry(key);
    if (!entry.status().IsNotFound() || entry.status().revision() != 0) {
      problem("key " + key + " of a failed write reads as " +
              (entry.ok() ? "present at revision " + std::to_string(entry->revision)
                          : entry.status().ToString()));
    }
  }
}

// What the store must hold, and how far the writes got.
struct Progress {
  Model model;
  uint64_t last = 0;                // the last acknowledged revision
  std::vector<std::string> absent;  // keys whose only writes failed
  int writes = 0;                   // numbers the values
};

// Writes `key` and records the outcome: an acknowledged write in the model,
// with the next revision.
Status WriteOne(Bucket& b, const std::string& key, const std::string& where, Progress* p,
                Report* report) {
  std::string value = ValueFor(key, p->writes++);
  auto put = b.Put(key, value);
  if (!put.ok()) return put.status();
  if (*put != p->last + 1) {
    report->Problem(where + ": writing " + key + " got revision " + std::to_string(*put) +
                    " after " + std::to_string(p->last));
  }
  p->last = *put;
  Acknowledge(&p->model, key, p->last, value);
  return Status::OK();
}

// The free space on the file system of `dir`, once RocksDB's background
// work of the last recovery (deleting the old WAL) has stopped changing it;
// 0 if statvfs fails.
uint64_t SettledFreeBytes(const std::string& dir) {
  uint64_t previous = 0;
  for (int i = 0; i < 40; ++i) {
    struct statvfs fs {};
    if (statvfs(dir.c_str(), &fs) != 0) return 0;
    const uint64_t now = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (now == previous) return now;
    previous = now;
    usleep(50 * 1000);
  }
  return previous;
}

// One round: fill the disk behind a filler file, write while it is full,
// then remove the filler and write again. Facts are named "<round>.<what>".
// False if the round could not go on.
bool FillRound(const std::string& mount_dir, Bucket& b, int round, Progress* p, Report* report) {
  const std::string tag = "round " + std::to_string(round);
  auto fact = [&](const std::string& name, const std::string& value) {
    report->Fact(std::to_string(round) + "." + name, value);
  };
  // The filler takes most of the free space, so that removing it leaves
  // room for RocksDB to flush what the store took meanwhile.
  const uint64_t free_bytes = SettledFreeBytes(mount_dir);
  if (free_bytes == 0) {
    report->Problem(tag + ": statvfs: " + strerror(errno));
    return false;
  }
  const std::string filler = mount_dir + "/filler";
  {
    std::ofstream out(filler, std::ios::binary);
    out << std::string(free_bytes * 6 / 10, 'f');
    if (!out.flush()) {
      report->Problem(tag + ": cannot write the filler file " + filler);
      return false;
    }
  }

  // Fill the disk.
  int acked = 0;
  Status failure;
  for (int i = 0; i < kMaxWrites && failure.ok(); ++i) {
    failure = WriteOne(b, "k." + std::to_string(p->writes % kKeys), tag + " fill", p, report);
    if (failure.ok()) ++acked;
  }
  fact("acked", std::to_string(acked));
  if (failure.ok()) {
    report->Problem(tag + ": " + std::to_string(kMaxWrites) + " writes of " +
                    std::to_string(kValueBytes) + " bytes never filled the tmpfs");
    return false;
  }
  fact("first_failure", CodeAndMessage(failure));

  // While the disk stays full, overwrites of existing keys and writes of new
  // keys fail the same way, and no failed write lands.
  int failed = 0;
  std::string codes;
  for (int i = 0; i < kWritesWhileFull; ++i) {
    const bool fresh = i % 2 == 0;
    std::string key = fresh ? "new." + std::to_string(round) + "." + std::to_string(i)
                            : "k." + std::to_string(i % kKeys);
    Status s = WriteOne(b, key, tag + " while full", p, report);
    if (s.ok()) {
      report->Problem(tag + ": writing " + key + " succeeded with the filler still in place");
      continue;
    }
    ++failed;
    codes += std::string(CodeName(s.code())) + " ";
    if (fresh) p->absent.push_back(key);
  }
  fact("while_full_failed", std::to_string(failed));
  fact("while_full_codes", codes);
  Verify(tag + " while full", b, p->model, p->last, p->absent, report);

  // Free the space: the same engine takes writes again, at once.
  if (unlink(filler.c_str()) != 0) {
    report->Problem(tag + ": cannot remove the filler: " + strerror(errno));
    return false;
  }
  int after_ok = 0;
  for (int i = 0; i < kWritesAfterFreeing; ++i) {
    std::string key = i % 2 == 0 ? "after." + std::to_string(round) + "." + std::to_string(i)
                                 : "k." + std::to_string(i % kKeys);
    Status s = WriteOne(b, key, tag + " after freeing", p, report);
    if (i == 0) fact("first_after_freeing", s.ok() ? "OK" : CodeAndMessage(s));
    if (s.ok()) {
      ++after_ok;
    } else {
      report->Problem(tag + ": after freeing space, writing " + key + ": " + s.ToString());
    }
  }
  fact("after_freeing_ok", std::to_string(after_ok));
  Verify(tag + " after freeing", b, p->model, p->last, p->absent, report);
  return true;
}

// The child's work, after the tmpfs is mounted on `mount_dir`.
void FillAndRecover(const std::string& mount_dir, bool sync, Report* report) {
  Options options;
  options.path = mount_dir + "/store";
  options.sync = sync;
  Progress progress;
  {
    auto engine = Engine::Open(options);
    if (!engine.ok()) {
      report->Problem("setup: Engine::Open: " + engine.status().ToString());
      return;
    }
    auto bucket = (*engine)->OpenBucket(kBucket, {.history = kHistory});
    if (!bucket.ok()) {
      report->Problem("setup: OpenBucket: " + bucket.status().ToString());
      return;
    }
    for (int round = 0; round < kRounds; ++round) {
      if (!FillRound(mount_dir, **bucket, round, &progress, report)) return;
    }
  }
  // And all of it survives a reopen.
  auto reopened = Engine::Open(options);
  if (!reopened.ok()) {
    report->Problem("reopen: " + reopened.status().ToString());
    return;
  }
  auto bucket = (*reopened)->OpenBucket(kBucket, {});
  if (!bucket.ok()) {
    report->Problem("reopen: OpenBucket: " + bucket.status().ToString());
    return;
  }
  Verify("reopened", **bucket, progress.model, progress.last, progress.absent, report);
  report->Fact("done", "yes");
}

// Runs in the forked child: a private mount namespace with a tmpfs on
// `mount_dir`, then the test body, reporting to `report_fd`.
void RunInPrivateTmpfs(const std::string& mount_dir, bool sync, int report_fd) {
  Report report;
  report.StreamTo(report_fd);
  if (unshare(CLONE_NEWNS) != 0) {
    report.Problem("setup: unshare(CLONE_NEWNS): " + std::string(strerror(errno)));
    return;
  }
  // Without this, the tmpfs would propagate to the parent's namespace.
  if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    report.Problem("setup: making / private: " + std::string(strerror(errno)));
    return;
  }
  if (mount("tmpfs", mount_dir.c_str(), "tmpfs", 0, kTmpfsSize) != 0) {
    report.Problem("setup: mounting a tmpfs on " + mount_dir + ": " + strerror(errno));
    return;
  }
  report.Fact("mounted", mount_dir);
  FillAndRecover(mount_dir, sync, &report);
}

// Forks, runs RunInPrivateTmpfs in the child, and returns its report.
Report RunChild(const std::string& mount_dir, bool sync) {
  int fds[2];
  if (pipe(fds) != 0) {
    Report r;
    r.Problem("pipe: " + std::string(strerror(errno)));
    return r;
  }
  pid_t pid = fork();
  if (pid < 0) {
    Report r;
    r.Problem("fork: " + std::string(strerror(errno)));
    return r;
  }
  if (pid == 0) {
    close(fds[0]);
    RunInPrivateTmpfs(mount_dir, sync, fds[1]);
    _exit(0);
  }
  close(fds[1]);
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + kChildDeadline;
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buf[4096];
    ssize_t r = read(fds[0], buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    text.append(buf, static_cast<size_t>(r));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  Report report = Report::Parse(text);
  if (timed_out) report.Problem("the child did not finish within the deadline and was killed");
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    report.Problem("the child ended abnormally (wait status " + std::to_string(wstatus) + ")");
  }
  return report;
}

class DiskFull : public ::testing::TestWithParam<bool> {};

TEST_P(DiskFull, WritesFailWithIOErrorAndResumeOnceSpaceIsFreed) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs in a private namespace needs root";
  TempDir dir;
  // A path component named "lock": the error mapping must not take it for
  // the store's LOCK file.
  const std::string mount_dir = dir.Sub("lock");
  ASSERT_TRUE(std::filesystem::create_directory(mount_dir));

  Report report = RunChild(mount_dir, GetParam());
  for (const auto& [name, value] : report.facts())
    std::cout << "child: " << name << " = " << value << "\n";
  for (const std::string& p : report.problems()) ADD_FAILURE() << p;
  ASSERT_TRUE(report.Has("mounted")) << "the child could not set up its tmpfs";

  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::string r = std::to_string(round) + ".";
    ASSERT_TRUE(report.Has(r + "first_failure"));

    // The full disk is an IOError that says what happened and what to do.
    const std::string first = report.Get(r + "first_failure");
    EXPECT_EQ(first.rfind("IOError: ", 0), 0u) << first;
    EXPECT_NE(first.find("No space left on device"), std::string::npos) << first;
    EXPECT_NE(first.find("free disk space"), std::string::npos) << first;
    EXPECT_EQ(first.find("held by another"), std::string::npos) << first;
    EXPECT_GT(std::stoi(report.Get(r + "acked")), 10) << "the tmpfs filled too early";

    EXPECT_EQ(report.Get(r + "while_full_failed"), std::to_string(kWritesWhileFull));
    std::string all_io;
    for (int i = 0; i < kWritesWhileFull; ++i) all_io += "IOError ";
    EXPECT_EQ(report.Get(r + "while_full_codes"), all_io);

    // Freed space: the very next write succeeds, without a reopen.
    EXPECT_EQ(report.Get(r + "first_after_freeing"), "OK");
    EXPECT_EQ(report.Get(r + "after_freeing_ok"), std::to_string(kWritesAfterFreeing));
  }
  EXPECT_EQ(report.Get("done"), "yes");

  // The namespace died with the child: nothing is mounted here.
  struct stat dir_stat {
  }, mount_stat{};
  ASSERT_EQ(stat(dir.path().c_str(), &dir_stat), 0);
  ASSERT_EQ(stat(mount_dir.c_str(), &mount_stat), 0);
  EXPECT_EQ(dir_stat.st_dev, mount_stat.st_dev) << "a tmpfs is still mounted on " << mount_dir;
}

INSTANTIATE_TEST_SUITE_P(disk_full, DiskFull, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "sync" : "nosync";
                         });

}  // namespace
}  // namespace revkv
