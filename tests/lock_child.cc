// revkv_lock_child: one process holding or waiting for lease locks through
// its own replicated engine, driven line by line by replicated_lock_test.
//
//   revkv_lock_child DIR NATS_URL LOCKS_MAX_AGE_S [LOCKS_BUCKET]
//
// Commands on stdin, one per line; one reply line each on stdout:
//   acquire NAME LEASE_MS TIMEOUT_MS RENEW  -> "acquired TOKEN T" | "error STATUS"
//   try NAME LEASE_MS RENEW                 -> "acquired TOKEN T" | "error STATUS"
//   lost                                    -> "lost 0" | "lost 1"
//   renew                                   -> "renewed STATUS"
//   release                                 -> "released T STATUS"
//   freeze BUCKET                           -> "frozen REVISION"
//   fenced BUCKET KEY VALUE REVISION        -> "fenced PUT_STATUS | UPDATE_STATUS"
// freeze holds BUCKET's replica from applying anything (REVISION is its
// last) until the next fenced, so that its view of the lock stays what it
// was. fenced writes VALUE to KEY twice, concurrently, fenced by the held
// lock: a Put, and an Update expecting REVISION. With the replica frozen,
// the writer's own check of the lock passes and only the server can refuse
// them; after 300 ms the replica is let go, and the replies report
// "OK <revision>" or the status of each.
// T is the steady clock (CLOCK_MONOTONIC, shared by every process of the
// machine) in nanoseconds when the call returned. RENEW is 1 for
// LockOptions::auto_renew, 0 without. The held lock's on_lost callback
// prints "on_lost STATUS" whenever it fires. EOF on stdin ends the process.

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "replication/replicated_bucket.h"
#include "revkv/revkv.h"

namespace {

std::mutex out_mu;

void Say(const std::string& line) {
  std::lock_guard<std::mutex> lock(out_mu);
  std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) _exit(3);  // the test went away
    done += static_cast<size_t>(n);
  }
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The status on one line (messages have no newlines, but be sure).
std::string OneLine(const revkv::Status& s) {
  std::string text = s.ToString();
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  return text;
}

std::string Outcome(const revkv::Result<uint64_t>& r) {
  return r.ok() ? "OK " + std::to_string(*r) : OneLine(r.status());
}

// A bucket's replica held from applying anything, on its own thread.
class Freezer {
 public:
  // Returns the frozen replica's last revision, or the status why not.
  revkv::Result<uint64_t> Freeze(revkv::Bucket* bucket) {
    auto* replicated = dynamic_cast<revkv::replication::ReplicatedBucket*>(bucket);
    if (replicated == nullptr) return revkv::Status::InvalidArgument("not a replicated bucket");
    Thaw();
    std::unique_lock<std::mutex> lock(mu_);
    frozen_ = false;
    thaw_ = false;
    thread_ = std::thread([this, replicated] {
      replicated->sink()->RunWithWritesHeld([this](uint64_t last) {
        std::unique_lock<std::mutex> lock(mu_);
        frozen_ = true;
        last_ = last;
        cv_.notify_all();
        cv_.wait(lock, [this] { return thaw_; });
      });
    });
    cv_.wait(lock, [this] { return frozen_; });
    return last_;
  }
  void Thaw() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      thaw_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  ~Freezer() { Thaw(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool frozen_ = false;
  bool thaw_ = false;
  uint64_t last_ = 0;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s DIR NATS_URL LOCKS_MAX_AGE_S [LOCKS_BUCKET]\n", argv[0]);
    return 1;
  }
  revkv::Options options;
  options.path = argv[1];
  options.nats.servers = {argv[2]};
  options.locks_max_age = std::chrono::seconds(std::stoll(argv[3]));
  if (argc == 5) options.locks_bucket = argv[4];
  auto engine = revkv::Engine::Open(options);
  if (!engine.ok()) {
    Say("error " + OneLine(engine.status()));
    return 2;
  }
  Say("ready");

  std::unique_ptr<revkv::Lock> lock;
  Freezer freezer;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd == "acquire" || cmd == "try") {
      std::string name;
      int64_t lease_ms = 0, timeout_ms = 0;
      int renew = 1;
      in >> name >> lease_ms;
      if (cmd == "acquire") in >> timeout_ms;
      in >> renew;
      if (lock) lock->Release().ok();
      lock.reset();
      const revkv::LockOptions lock_options{.auto_renew = renew != 0};
      auto r = cmd == "acquire"
                   ? (*engine)->Acquire(name, std::chrono::milliseconds(lease_ms),
                                        std::chrono::milliseconds(timeout_ms), lock_options)
                   : (*engine)->TryAcquire(name, std::chrono::milliseconds(lease_ms), lock_options);
      const int64_t t = NowNs();
      if (!r.ok()) {
        Say("error " + OneLine(r.status()));
        continue;
      }
      lock = std::move(*r);
      lock->on_lost([](const revkv::Status& why) { Say("on_lost " + OneLine(why)); });
      Say("acquired " + std::to_string(lock->fencing_token()) + " " + std::to_string(t));
    } else if (cmd == "lost") {
      Say(std::string("lost ") + (lock && lock->lost() ? "1" : "0"));
    } else if (cmd == "renew") {
      Say("renewed " + (lock ? OneLine(lock->Renew()) : std::string("no-lock")));
    } else if (cmd == "release") {
      const revkv::Status s = lock ? lock->Release() : revkv::Status::InvalidArgument("no lock");
      const int64_t t = NowNs();
      Say("released " + std::to_string(t) + " " + OneLine(s));
    } else if (cmd == "freeze") {
      std::string bucket_name;
      in >> bucket_name;
      auto bucket = (*engine)->OpenBucket(bucket_name);
      if (!bucket.ok()) {
        Say("error " + OneLine(bucket.status()));
        continue;
      }
      auto frozen = freezer.Freeze(bucket->get());
      Say(frozen.ok() ? "frozen " + std::to_string(*frozen) : "error " + OneLine(frozen.status()));
    } else if (cmd == "fenced") {
      std::string bucket_name, key, value;
      uint64_t revision = 0;
      in >> bucket_name >> key >> value >> revision;
      auto bucket = (*engine)->OpenBucket(bucket_name);
      if (!bucket.ok() || !lock) {
        Say("error " + (lock ? OneLine(bucket.status()) : std::string("no lock")));
        continue;
      }
      const revkv::WriteOptions fenced{.fence = lock->fence()};
      revkv::Result<uint64_t> put = revkv::Status::Unavailable("not run");
      revkv::Result<uint64_t> update = revkv::Status::Unavailable("not run");
      std::thread put_thread([&] { put = (*bucket)->Put(key, value, fenced); });
      std::thread update_thread([&] { update = (*bucket)->Update(key, value, revision, fenced); });
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      freezer.Thaw();
      put_thread.join();
      update_thread.join();
      Say("fenced " + Outcome(put) + " | " + Outcome(update));
    } else {
      Say("error unknown command '" + cmd + "'");
    }
  }
  return 0;
}
