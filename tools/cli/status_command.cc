// status, and --version (which asks the server through the same bucket).

#include <stdlib.h>

#include <filesystem>
#include <system_error>

#include "commands.h"
#include "common.h"
#include "context.h"
#include "output.h"

namespace revkv::cli {
namespace {

// The bytes of the files under `dir`, recursively; what cannot be read
// counts as nothing.
uint64_t DiskBytes(const std::string& dir) {
  namespace fs = std::filesystem;
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      const uintmax_t size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

int PrintStatus(const Context& ctx, StatusReport report) {
  if (ctx.args.disk_usage) report.disk_bytes = DiskBytes(*ctx.args.db);
  Write(StatusText(ctx.args.json, report));
  return FinishOutput();
}

}  // namespace

// A bucket that does not exist yet: nothing applied, nothing to catch up.
int EmptyStatus(Context& ctx) {
  StatusReport report;
  report.stream_last = 0;
  report.connected = ctx.connected;
  return PrintStatus(ctx, report);
}

int RunStatus(Context& ctx) {
  if (int rc; !Open(ctx, &rc, /*catch_up=*/false)) return rc;
  // The skipped messages are kept in the replica's store: known even when
  // the server is not reachable.
  const revkv::BucketStatus s = ctx.bucket->GetStatus();
  StatusReport report{s.applied,        s.stream_last, s.connected,     s.server_version,
                      s.skipped,        s.first_skipped, s.skipped_reason, std::nullopt};
  if (ctx.replicated() && !ctx.connected) {
    // A replica read without its server (a local engine answers for it):
    // the stream's last revision is unknown.
    report.stream_last.reset();
    report.connected = false;
  }
  return PrintStatus(ctx, report);
}

// "revkv VERSION", and with --nats "nats-server VERSION" of the server the
// bucket's connection is on: read through DIR (--db), or else through a
// temporary replica that is removed afterwards.
int PrintVersion(const Args& args) {
  Write(std::string("revkv ") + revkv::Version() + "\n");
  if (args.nats.empty()) return FinishOutput();
  if (int rc = FinishOutput(); rc != kExitOk) return rc;
  Args status_args = args;
  status_args.positional = {"status"};
  status_args.separator.reset();
  status_args.version = false;
  std::string temp;
  if (!status_args.db) {
    const char* tmpdir = getenv("TMPDIR");
    std::string pattern = std::string(tmpdir != nullptr && *tmpdir ? tmpdir : "/tmp") +
                          "/revkv-version-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      return Fail(kExitError, "cannot create a temporary replica directory in " + pattern);
    }
    temp = pattern;
    status_args.db = temp;
  }
  int rc;
  {
    Command status = *FindCommand("status");
    status.on_missing_bucket = nullptr;  // no version without the bucket
    Context ctx{status_args, status};
    rc = PrepareContext(ctx);
    if (rc == kExitOk && Open(ctx, &rc, /*catch_up=*/false)) {
      const std::string version = ctx.connected ? ctx.bucket->GetStatus().server_version : "";
      if (version.empty()) {
        rc = Fail(kExitUnavailable, "Unavailable: cannot read the NATS server's version");
      } else {
        Write("nats-server " + Printable(version) + "\n");
        rc = FinishOutput();
      }
    }
  }
  if (!temp.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp, ec);
  }
  return rc;
}

}  // namespace revkv::cli
