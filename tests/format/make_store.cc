// Writes the store that tests/format_test.cc opens: a small store of the
// current format (layout.h's kStoreFormatVersion), made once and committed
// under tests/data/, so that a later revkv with a new layout is tested on
// stores written by this one. Rerun it only for a new format version, into a
// new directory:
//
//   build/tests/revkv_make_format_store DIR
//   (copy DIR's files, except LOCK and LOG*, into tests/data/store-format-N/)
//
// What it writes is what format_test.cc expects, written out there by hand.

#include <chrono>
#include <cstdio>
#include <string>

#include "engine/layout.h"
#include "engine/replica_sink.h"
#include "revkv/revkv.h"

namespace {

int Fail(const std::string& what, const revkv::Status& s) {
  std::fprintf(stderr, "make_store: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

#define CHECK_OK(expr, what)                       \
  do {                                             \
    auto _r = (expr);                              \
    if (!_r.ok()) return Fail(what, _r.status());  \
  } while (0)

}  // namespace

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  auto engine = revkv::Engine::Open({.path = argv[1]});
  if (!engine.ok()) return Fail("open", engine.status());

  // "h5": history 5; every operation kind, history trims, a binary value, a
  // transaction.
  auto h5 = (*engine)->OpenBucket("h5", {.history = 5});
  if (!h5.ok()) return Fail("h5", h5.status());
  auto& b = **h5;
  CHECK_OK(b.Put("a", "a1"), "1");                                   // 1
  CHECK_OK(b.Put("b", "b1"), "2");                                   // 2
  CHECK_OK(b.Update("a", "a2", 1), "3");                             // 3
  CHECK_OK(b.Create("c", "c1"), "4");                                // 4
  CHECK_OK(b.Delete("b"), "5");                                      // 5
  CHECK_OK(b.Put("a", "a3"), "6");                                   // 6
  CHECK_OK(b.Purge("c"), "7");                                       // 7
  CHECK_OK(b.Put("d", std::string("\x00\x01\xff", 3)), "8");         // 8
  CHECK_OK(b.Create("e", "e1", {.ttl = std::chrono::hours(24 * 365 * 50)}), "9");  // 9
  revkv::Txn txn;
  txn.ops = {revkv::TxnOp::Put("f", "f1"), revkv::TxnOp::Put("g.x", "g1")};
  CHECK_OK(b.Commit(txn), "10-11");                                  // 10, 11
  for (int i = 4; i <= 9; ++i) {
    CHECK_OK(b.Put("a", "a" + std::to_string(i)), "a" + std::to_string(i));  // 12..17
  }

  // "h1": history 1, with a TTL'd Put.
  auto h1 = (*engine)->OpenBucket("h1", {.history = 1, .max_value_size = 4096});
  if (!h1.ok()) return Fail("h1", h1.status());
  auto& c = **h1;
  CHECK_OK(c.Put("x", "x1"), "h1 1");                                          // 1
  CHECK_OK(c.Put("x", "x2", {.ttl = std::chrono::hours(24 * 365 * 50)}), "h1 2");  // 2
  CHECK_OK(c.Put("y", "y1"), "h1 3");                                          // 3
  CHECK_OK(c.Delete("y", 3), "h1 4");                                          // 4

  // "rep": a replica's bookkeeping (source, applied revision across a gap,
  // a skipped message), written as the apply loop would.
  auto rep = (*engine)->OpenBucket("rep", {.history = 2});
  if (!rep.ok()) return Fail("rep", rep.status());
  auto sink = std::dynamic_pointer_cast<revkv::engine::ReplicaSink>(*rep);
  if (!sink) return Fail("rep", revkv::Status::InvalidArgument("not a local bucket"));
  if (auto s = sink->ResetReplica(1700000000123456789); !s.ok()) return Fail("reset", s);
  revkv::Entry r1{"r.1", "v10", 10, 1700000001000000000, revkv::Operation::kPut, 0};
  revkv::Entry r2{"r.2", "v12", 12, 1700000002000000000, revkv::Operation::kPut, 0};
  revkv::Entry r3{"r.1", "", 13, 1700000003000000000, revkv::Operation::kDelete, 0};
  if (auto s = sink->ApplyCommitted({r1, r2, r3}, 15, {{11, "its payload is damaged"}});
      !s.ok()) {
    return Fail("apply", s);
  }
  // Buckets keep the store open: let them go first.
  sink.reset();
  *h5 = nullptr;
  *h1 = nullptr;
  *rep = nullptr;
  // Closed and opened once more, so that the entries move from the
  // write-ahead log into table files, as in a store that has run a while.
  engine->reset();
  engine = revkv::Engine::Open({.path = argv[1]});
  if (!engine.ok()) return Fail("reopen", engine.status());
  engine->reset();
  std::printf("wrote a store of format %llu to %s\n",
              static_cast<unsigned long long>(revkv::engine::kStoreFormatVersion), argv[1]);
  return 0;
}
