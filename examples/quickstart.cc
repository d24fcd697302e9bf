// The README's quick start: open a store, write, read, compare-and-swap.
//
//   ./build/examples/revkv_quickstart /tmp/revkv-demo

#include <cstdio>
#include <string>

#include "revkv/revkv.h"

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "/tmp/revkv-quickstart";

  std::printf("revkv %s\n", revkv::Version());
  auto engine = revkv::Engine::Open({.path = path});
  if (!engine.ok()) {
    std::fprintf(stderr, "open: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  auto jobs = (*engine)->OpenBucket("jobs", {.history = 5});
  if (!jobs.ok()) {
    std::fprintf(stderr, "bucket: %s\n", jobs.status().ToString().c_str());
    return 1;
  }
  auto& bucket = *jobs;

  // Optimistic read-modify-write: read the revision, write back only if it is
  // unchanged, retry on Conflict.
  for (int attempt = 1;; ++attempt) {
    auto entry = bucket->GetEntry("job.42");
    uint64_t seen = 0;
    std::string state = "queued";
    if (entry.ok()) {
      seen = entry->revision;
      state = entry->value == "queued" ? "running" : "done";
    } else if (!entry.status().IsNotFound()) {
      std::fprintf(stderr, "read: %s\n", entry.status().ToString().c_str());
      return 1;
    }
    auto rev = seen == 0 ? bucket->Create("job.42", state) : bucket->Update("job.42", state, seen);
    if (rev.ok()) {
      std::printf("job.42 -> %s at revision %llu (attempt %d)\n", state.c_str(),
                  static_cast<unsigned long long>(*rev), attempt);
      return 0;
    }
    if (!rev.status().IsConflict() && !rev.status().IsExists()) {
      std::fprintf(stderr, "write: %s\n", rev.status().ToString().c_str());
      return 1;
    }
  }
}
