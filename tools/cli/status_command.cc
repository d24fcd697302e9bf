// status, and --version (which also asks the server, with --nats).

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
// connection is on (Engine::ServerVersion). The engine needs a store, so it
// opens a temporary one, removed afterwards: no bucket is read or made.
int PrintVersion(const Args& args) {
  Write(std::string("revkv ") + revkv::Version() + "\n");
  if (args.nats.empty()) return FinishOutput();
  if (int rc = FinishOutput(); rc != kExitOk) return rc;
  // The connection options, checked as every command checks them.
  Args version_args = args;
  version_args.positional = {"status"};
  version_args.separator.reset();
  Context ctx{version_args, *FindCommand("status")};
  if (int rc = PrepareContext(ctx); rc != kExitOk) return rc;
  const char* tmpdir = getenv("TMPDIR");
  std::string temp = std::string(tmpdir != nullptr && *tmpdir ? tmpdir : "/tmp") +
                     "/revkv-version-XXXXXX";
  if (mkdtemp(temp.data()) == nullptr) {
    return Fail(kExitError, "cannot create a temporary directory in " + temp +
                                "; set TMPDIR to a writable directory");
  }
  int rc;
  {
    revkv::Options options = EngineOptions(version_args, ctx.nats);
    options.path = temp;
    auto engine = revkv::Engine::Open(options);
    auto version = engine.ok() ? (*engine)->ServerVersion() : Result<std::string>(engine.status());
    if (!version.ok()) {
      rc = FailStatus(version.status());
    } else {
      Write("nats-server " + Printable(*version) + "\n");
      rc = FinishOutput();
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(temp, ec);
  return rc;
}

}  // namespace revkv::cli
