// revkv_crash_writer DIR BUCKET HISTORY
//
// The victim of crash_test: opens the store at DIR (Options::sync = false),
// opens BUCKET with HISTORY, and writes to the keys "k.0".."k.19" forever,
// mixing Put, Update (compare-and-swap on the revision it last saw), Create
// after a tombstone, Delete and Purge. It picks up from whatever state the
// store holds, so it can be killed and restarted on the same directory.
//
// Every value checks itself:
//   "<key>|<pid>|<seq>|<length>|<filler>" followed by 16 hex digits, the
//   FNV-1a 64 hash of everything before them; <length> is the whole value's
//   size, 10 bytes to about 20 KiB.
//
// After each write returns OK, one line goes to stdout with a single write(2)
// before the next write starts:
//   "<OP> <key> <revision> <checksum>\n"
// OP is PUT, CREATE, UPDATE, DEL or PURGE; checksum is the FNV-1a 64 hash of
// the whole value in 16 hex digits, or "-" for tombstones. Any error goes to
// stderr and the writer exits with status 1.

#include "tests/crash_value.h"
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "revkv/revkv.h"

namespace {

constexpr int kKeys = 20;
constexpr size_t kMinValue = 10;
constexpr size_t kMaxValue = 20 * 1024;

using revkv::testing::Fnv1a64;
using revkv::testing::Hex16;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "revkv_crash_writer: %s\n", what.c_str());
  std::fflush(stderr);
  std::exit(1);
}

// A self-checking value of about `size` bytes (never shorter than its header
// and checksum need).
std::string MakeValue(const std::string& key, long pid, uint64_t seq, size_t size,
                      std::mt19937_64& rng) {
  std::string head = key + "|" + std::to_string(pid) + "|" + std::to_string(seq) + "|";
  // The length field's own digits count toward the length: settle it.
  size_t total = size;
  for (int i = 0; i < 3; ++i) {
    size_t min_total = head.size() + std::to_string(total).size() + 1 + 16;
    if (total < min_total) total = min_total;
  }
  std::string value = head + std::to_string(total) + "|";
  if (value.size() + 16 > total) Fail("internal: value header longer than its length");
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
  while (value.size() + 16 < total) {
    uint64_t bits = rng();
    for (int i = 0; i < 10 && value.size() + 16 < total; ++i, bits >>= 6) {
      value.push_back(kAlphabet[bits & 63]);
    }
  }
  value += Hex16(Fnv1a64(value));
  return value;
}

// 10 B .. 20 KiB, log-uniform: most values are small, some are large.
size_t PickSize(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  double size = static_cast<double>(kMinValue) *
                std::pow(static_cast<double>(kMaxValue) / kMinValue, u(rng));
  return static_cast<size_t>(size);
}

void Ack(std::string_view op, const std::string& key, uint64_t revision,
         const std::string& checksum) {
  std::string line = std::string(op) + " " + key + " " + std::to_string(revision) + " " +
                     checksum + "\n";
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(STDOUT_FILENO, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail(std::string("writing an acknowledgement: ") + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
}

struct KeyState {
  uint64_t revision = 0;  // latest revision, live or tombstone; 0: no entry
  bool live = false;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DIR BUCKET HISTORY\n", argv[0]);
    return 2;
  }
  const int history = std::atoi(argv[3]);

  revkv::Options options;
  options.path = argv[1];
  options.sync = false;
  auto engine = revkv::Engine::Open(options);
  if (!engine.ok()) Fail("Engine::Open: " + engine.status().ToString());
  revkv::BucketOptions bucket_options;
  bucket_options.history = history;
  auto opened = (*engine)->OpenBucket(argv[2], bucket_options);
  if (!opened.ok()) Fail("OpenBucket: " + opened.status().ToString());
  std::shared_ptr<revkv::Bucket> bucket = *opened;

  const long pid = static_cast<long>(::getpid());
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(pid));

  // Resume from the store's state.
  std::vector<std::string> keys;
  std::vector<KeyState> state(kKeys);
  for (int i = 0; i < kKeys; ++i) {
    keys.push_back("k." + std::to_string(i));
    auto entry = bucket->GetEntry(keys[i]);
    if (entry.ok()) {
      state[i] = {entry->revision, true};
    } else if (entry.status().IsNotFound()) {
      state[i] = {entry.status().revision(), false};  // tombstone, or 0: none
    } else {
      Fail("GetEntry(" + keys[i] + "): " + entry.status().ToString());
    }
  }

  uint64_t last_revision = bucket->LastRevision();
  for (uint64_t seq = 1;; ++seq) {
    const int i = static_cast<int>(rng() % kKeys);
    const std::string& key = keys[i];
    KeyState& ks = state[i];
    const int dice = static_cast<int>(rng() % 100);

    std::string_view op;
    std::string value;
    revkv::Result<uint64_t> rev = revkv::Status::Unavailable("no write chosen");
    auto value_for = [&]() { return MakeValue(key, pid, seq, PickSize(rng), rng); };
    if (ks.live) {
      if (dice < 40) {
        op = "PUT";
        value = value_for();
        rev = bucket->Put(key, value);
      } else if (dice < 78) {
        op = "UPDATE";
        value = value_for();
        rev = bucket->Update(key, value, ks.revision);
      } else if (dice < 86) {
        op = "DEL";
        rev = bucket->Delete(key);
      } else if (dice < 94) {
        op = "DEL";
        rev = bucket->Delete(key, ks.revision);
      } else {
        op = "PURGE";
        rev = (dice % 2 == 0) ? bucket->Purge(key) : bucket->Purge(key, ks.revision);
      }
    } else {
      if (dice < 60) {
        op = "CREATE";
        value = value_for();
        rev = bucket->Create(key, value);
      } else if (dice < 80) {
        op = "UPDATE";  // compare-and-swap on the tombstone, or 0 for none
        value = value_for();
        rev = bucket->Update(key, value, ks.revision);
      } else if (dice < 92) {
        op = "PUT";
        value = value_for();
        rev = bucket->Put(key, value);
      } else if (dice < 96) {
        op = "DEL";
        rev = bucket->Delete(key);
      } else {
        op = "PURGE";
        rev = bucket->Purge(key);
      }
    }
    if (!rev.ok()) Fail(std::string(op) + " " + key + ": " + rev.status().ToString());
    if (*rev <= last_revision) {
      Fail(std::string(op) + " " + key + " returned revision " + std::to_string(*rev) +
           ", not above the previous " + std::to_string(last_revision));
    }
    last_revision = *rev;
    const bool tombstone = op == "DEL" || op == "PURGE";
    ks.revision = *rev;
    ks.live = !tombstone;
    Ack(op, key, *rev, tombstone ? std::string("-") : Hex16(Fnv1a64(value)));
  }
}
