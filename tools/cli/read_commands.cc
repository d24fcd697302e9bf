// get, entry, keys, entries, history.

#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "output.h"

namespace revkv::cli {

int RunGet(Context& ctx) {
  if (int rc; !Open(ctx, &rc)) return rc;
  auto got = ctx.bucket->Get(ctx.key());
  if (!got.ok()) return FailStatus(got.status());
  Write(*got);
  // A shell prompt after a value without a newline is unreadable, but a
  // pipe or file must get the exact bytes.
  if (isatty(STDOUT_FILENO)) Write("\n");
  return FinishOutput();
}

int RunEntry(Context& ctx) {
  if (int rc; !Open(ctx, &rc)) return rc;
  auto entry = ctx.bucket->GetEntry(ctx.key());
  if (!entry.ok()) return FailStatus(entry.status());
  Write(ctx.args.json ? EntryJson(*entry) : EntryText(*entry));
  return FinishOutput();
}

int EmptyKeys(Context& ctx) {
  if (ctx.args.json) Write("[]\n");
  return FinishOutput();
}

int RunKeys(Context& ctx) {
  if (int rc; !Open(ctx, &rc)) return rc;
  // Page by page, so that a bucket of millions of keys is never held in
  // memory at once; the JSON array is written as it goes.
  constexpr size_t kPage = 4096;
  std::string after;
  bool first = true;
  while (true) {
    auto keys = ctx.bucket->KeysAfter(ctx.filter, after, kPage);
    if (!keys.ok()) return FailStatus(keys.status());
    std::string out;
    for (const std::string& k : *keys) {
      if (ctx.args.json) {
        out += first ? "[" : ",";
        out += Dump(Json(k));
      } else {
        out += k + "\n";
      }
      first = false;
    }
    if (keys->size() < kPage) {
      if (ctx.args.json) out += first ? "[]\n" : "]\n";
      Write(out);
      break;
    }
    Write(out);
    after = keys->back();
  }
  return FinishOutput();
}

int EmptyEntries(Context&) { return FinishOutput(); }

int RunEntries(Context& ctx) {
  if (int rc; !Open(ctx, &rc)) return rc;
  auto snapshot = ctx.bucket->Entries(ctx.filter);
  if (!snapshot.ok()) return FailStatus(snapshot.status());
  std::string out;
  for (const revkv::Entry& e : snapshot->entries) {
    out += ctx.args.json ? EntryJson(e)
                         : Printable(e.key) + " " + std::to_string(e.revision) + " " +
                               EscapeText(e.value) + "\n";
  }
  Write(out);
  return FinishOutput();
}

int RunHistory(Context& ctx) {
  if (int rc; !Open(ctx, &rc)) return rc;
  auto history = ctx.bucket->History(ctx.key());
  if (!history.ok()) return FailStatus(history.status());
  std::string out;
  for (const revkv::Entry& e : *history) out += EntryLine(e, ctx.args.json, /*with_key=*/false);
  Write(out);
  return FinishOutput();
}

}  // namespace revkv::cli
