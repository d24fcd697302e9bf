#include "context.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "common.h"

namespace revkv::cli {
namespace {

int BadValue(const std::string& what, const std::string& text, const std::string& why) {
  return Fail(kExitInvalidArgument, "InvalidArgument: " + what + " " + Quote(text) + " " + why);
}

// A TTL in whole seconds, at least 1 s, as NATS takes it.
std::optional<std::chrono::seconds> ParseTtl(const std::string& text) {
  auto d = ParseDuration(text);
  if (!d || d->count() < 1000 || d->count() % 1000 != 0) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::seconds>(*d);
}

// Options that only some commands take, or only with --nats.
int CheckOptionsApply(const Context& ctx) {
  const Args& args = ctx.args;
  const std::string_view command = ctx.command.name;
  if (args.revision && command != "delete" && command != "purge") {
    return UsageError("--revision applies only to delete and purge");
  }
  if ((args.lease || args.timeout) && command != "lock") {
    return UsageError(std::string(args.lease ? "--lease" : "--timeout") + " applies only to lock");
  }
  if (args.ttl && command != "put" && command != "create" && command != "update") {
    return UsageError("--ttl applies only to put, create and update");
  }
  if (args.disk_usage && command != "status") {
    return UsageError("--disk-usage applies only to status");
  }
  if (args.fence && !ctx.command.writes) return UsageError("--fence applies only to writes");
  if (args.fence && command == "lock") return UsageError("--fence does not apply to lock");
  if (args.allow_atomic && (command == "lock" || command == "watch")) {
    return UsageError("--allow-atomic does not apply to " + std::string(command));
  }
  if (ctx.replicated()) return kExitOk;
  const std::pair<const char*, bool> nats_only[] = {
      {"--user", args.user.has_value()},
      {"--password", args.password.has_value()},
      {"--token", args.token.has_value()},
      {"--creds", args.creds.has_value()},
      {"--tls-ca", args.tls_ca.has_value()},
      {"--tls-cert", args.tls_cert.has_value()},
      {"--tls-key", args.tls_key.has_value()},
      {"--write-timeout", args.write_timeout.has_value()},
      {"--limit-marker-ttl", args.limit_marker_ttl.has_value()},
      {"--allow-atomic", args.allow_atomic},
      {"--local", args.local}};
  for (const auto& [flag, given] : nats_only) {
    if (given) return UsageError(std::string(flag) + " applies only with --nats");
  }
  return kExitOk;
}

int ParseValues(Context& ctx) {
  const Args& args = ctx.args;
  ctx.nats.servers = args.nats;
  ctx.nats.user = args.user.value_or("");
  ctx.nats.password = args.password.value_or("");
  ctx.nats.token = args.token.value_or("");
  ctx.nats.creds_file = args.creds.value_or("");
  ctx.nats.tls_ca = args.tls_ca.value_or("");
  ctx.nats.tls_cert = args.tls_cert.value_or("");
  ctx.nats.tls_key = args.tls_key.value_or("");
  if (args.write_timeout) {
    auto d = ParseDuration(*args.write_timeout);
    if (!d || d->count() == 0) {
      return BadValue("--write-timeout", *args.write_timeout,
                      "is not a duration; give a whole positive number with a unit, e.g. "
                      "500ms, 10s or 2m (at most a year)");
    }
    ctx.nats.write_timeout = *d;
  }
  ctx.bucket_options.allow_atomic_batches = args.allow_atomic;
  if (args.history) {
    auto h = ParseUint64(*args.history);
    if (!h || *h < 1 || *h > static_cast<uint64_t>(revkv::kMaxHistory)) {
      return BadValue("--history", *args.history,
                      "is not a number from 1 to " + std::to_string(revkv::kMaxHistory));
    }
    ctx.bucket_options.history = static_cast<int>(*h);
  }
  if (args.fence) {
    // NAME:TOKEN, the token being the last ':'-separated field.
    const size_t colon = args.fence->rfind(':');
    const auto token = colon == std::string::npos
                           ? std::nullopt
                           : ParseUint64(std::string_view(*args.fence).substr(colon + 1));
    if (!token || colon == 0 || *token == 0) {
      return BadValue("--fence", *args.fence,
                      "is not NAME:TOKEN; give the lock's name and its fencing token, e.g. "
                      "lock.jobs:42 (revkv lock passes REVKV_LOCK_NAME and REVKV_FENCING_TOKEN)");
    }
    ctx.write_options.fence = revkv::Fence{args.fence->substr(0, colon), *token};
  }
  if (args.ttl) {
    auto ttl = ParseTtl(*args.ttl);
    if (!ttl) {
      return BadValue("--ttl", *args.ttl,
                      "is not a TTL; give whole seconds, at least 1s, e.g. 30s or 5m");
    }
    ctx.write_options.ttl = *ttl;
  }
  if (args.limit_marker_ttl) {
    auto ttl = ParseTtl(*args.limit_marker_ttl);
    if (!ttl) {
      return BadValue("--limit-marker-ttl", *args.limit_marker_ttl,
                      "is not a TTL; give whole seconds, at least 1s, e.g. 5s");
    }
    ctx.bucket_options.limit_marker_ttl = *ttl;
  }
  const bool update = ctx.command.name == "update";
  if (args.revision || update) {
    const std::string& text = update ? ctx.params[2] : *args.revision;
    ctx.expected_revision = ParseUint64(text);
    if (!ctx.expected_revision) {
      return BadValue(update ? "REVISION" : "--revision", text,
                      "is not a revision number (0 or more)");
    }
  }
  return kExitOk;
}

// Reads take every key a replica can hold, including keys other NATS
// clients stored beyond revkv's own write rules; writes keep those rules.
int CheckKey(Context& ctx) {
  const std::string_view command = ctx.command.name;
  if (revkv::Status s = revkv::ValidateBucketName(ctx.bucket_name); !s.ok()) return FailStatus(s);
  const bool has_filter = command == "keys" || command == "watch" || command == "entries";
  ctx.filter = has_filter && !ctx.params.empty() ? ctx.params[0] : ">";
  if (has_filter) {
    if (revkv::Status s = revkv::ValidateReadFilter(ctx.filter); !s.ok()) return FailStatus(s);
  } else if (command == "status" || command == "txn") {
    // No key.
  } else if (!ctx.command.writes) {
    if (revkv::Status s = revkv::ValidateReadKey(ctx.params[0]); !s.ok()) return FailStatus(s);
  } else if (revkv::Status s = revkv::ValidateKey(ctx.params[0]); !s.ok()) {
    if (command != "lock") return FailStatus(s);
    return Fail(kExitInvalidArgument, "InvalidArgument: bad lock name (names follow the key "
                                      "rules): " + std::string(s.message()));
  }
  if (ctx.command.min_args >= 2) {
    if (ctx.params[1] != "-") {
      ctx.value = ctx.params[1];
    } else if (int rc = ReadStdin(&ctx.value); rc != kExitOk) {
      return rc;
    }
  }
  return kExitOk;
}

// lock: the arguments after "--" are CMD. If "--" came before NAME (it then
// only ended the options), CMD follows a second, literal "--".
int SplitLockCommand(Context& ctx) {
  const Args& args = ctx.args;
  std::optional<size_t> cmd_at;  // index in positional of CMD's first word
  size_t name_end = 0;           // NAME and any stray words: positional[1, name_end)
  if (args.separator && *args.separator >= 2) {
    cmd_at = name_end = *args.separator;
  } else if (args.separator) {
    const auto second = std::find(args.positional.begin() + 1, args.positional.end(), "--");
    if (second != args.positional.end()) {
      name_end = static_cast<size_t>(second - args.positional.begin());
      cmd_at = name_end + 1;
    } else if (*args.separator == 1) {
      cmd_at = name_end = 1;  // "lock -- CMD": NAME is missing
    }
  }
  const std::string synopsis = "; use: revkv " + std::string(ctx.command.synopsis);
  if (!cmd_at) return UsageError("lock needs '--' before the command" + synopsis);
  if (*cmd_at >= args.positional.size()) {
    return UsageError("lock needs a command after '--'" + synopsis);
  }
  ctx.lock_cmd.assign(args.positional.begin() + static_cast<ptrdiff_t>(*cmd_at),
                      args.positional.end());
  ctx.params.assign(args.positional.begin() + 1,
                    args.positional.begin() + static_cast<ptrdiff_t>(name_end));
  return kExitOk;
}

}  // namespace

int PrepareContext(Context& ctx) {
  ctx.bucket_name = ctx.args.bucket.value_or("default");
  ctx.params.assign(ctx.args.positional.begin() + 1, ctx.args.positional.end());
  if (ctx.command.name == "lock") {
    if (int rc = SplitLockCommand(ctx); rc != kExitOk) return rc;
  }
  if (ctx.params.size() < ctx.command.min_args || ctx.params.size() > ctx.command.max_args) {
    return UsageError("wrong number of arguments; use: revkv " + std::string(ctx.command.synopsis));
  }
  if (int rc = CheckOptionsApply(ctx); rc != kExitOk) return rc;
  if (int rc = ParseValues(ctx); rc != kExitOk) return rc;
  return CheckKey(ctx);
}

revkv::Options EngineOptions(const Args& args, const revkv::NatsOptions& nats) {
  revkv::Options options;
  options.path = args.db.value_or("");
  options.sync = args.sync;
  options.nats = nats;
  if (args.locks_bucket) options.locks_bucket = *args.locks_bucket;
  return options;
}

int OpenBucket(Context& ctx, bool catch_up) {
  const bool writes = ctx.command.writes;
  revkv::Options options = EngineOptions(ctx.args, ctx.nats);
  // Reading must not leave a new store behind a mistyped --db. With --nats
  // the directory is a replica, which a read may create and fill from the
  // server.
  options.create_if_missing = writes || ctx.replicated();
  // The one warning a read prints when it answers from a replica it could
  // not bring up to date.
  bool warned = false;
  auto warn_stale = [&warned](const revkv::Status& why) {
    if (warned) return;
    warned = true;
    Warn("cannot reach the NATS server (" + why.ToString() +
         "); answering from the local replica, which may be stale");
  };
  auto engine = revkv::Engine::Open(options);
  ctx.connected = ctx.replicated() && engine.ok();
  if (!engine.ok() && ctx.replicated() && !writes &&
      engine.status().code() == revkv::Code::kUnavailable) {
    // The server is unreachable (a store held by another process is
    // Unavailable too, and stays so below). Reads fall back to the replica.
    const revkv::Status why = engine.status();
    revkv::Options local = options;
    local.nats = revkv::NatsOptions{};
    local.create_if_missing = false;
    auto fallback = revkv::Engine::Open(local);
    if (fallback.ok()) {
      warn_stale(why);
      engine = std::move(fallback);
    }
  }
  if (!engine.ok()) return FailStatus(engine.status());
  ctx.engine = std::move(*engine);
  auto missing_bucket = [&ctx] {
    if (ctx.command.on_missing_bucket != nullptr) return ctx.command.on_missing_bucket(ctx);
    return Fail(kExitNotFound, "NotFound: bucket " + Quote(ctx.bucket_name) +
                                   " does not exist in the store at " + Quote(*ctx.args.db));
  };
  if (!writes && !ctx.connected) {
    // Nor create a bucket just to find it empty.
    const std::vector<std::string> buckets = ctx.engine->ListBuckets();
    if (std::find(buckets.begin(), buckets.end(), ctx.bucket_name) == buckets.end()) {
      return missing_bucket();
    }
  }
  // A read does not create the bucket on the server either.
  ctx.bucket_options.create_if_missing = writes;
  // A long bootstrap of a new replica shows its progress on a terminal only:
  // scripts reading stderr see no progress lines.
  bool progress_shown = false;
  if (isatty(STDERR_FILENO)) {
    ctx.bucket_options.bootstrap_progress = [&progress_shown](const revkv::BootstrapProgress& p) {
      progress_shown = true;
      std::fprintf(stderr, "\rbootstrapping: %llu entries, revision %llu of %llu (%d%%)",
                   static_cast<unsigned long long>(p.loaded),
                   static_cast<unsigned long long>(p.revision),
                   static_cast<unsigned long long>(p.target),
                   p.target == 0 ? 100 : static_cast<int>(p.revision * 100 / p.target));
      std::fflush(stderr);
    };
  }
  auto opened = ctx.engine->OpenBucket(ctx.bucket_name, ctx.bucket_options);
  ctx.bucket_options.bootstrap_progress = nullptr;
  if (progress_shown) std::fprintf(stderr, "\n");
  if (!opened.ok() && opened.status().IsNotFound() && !writes) return missing_bucket();
  if (!opened.ok()) return FailStatus(opened.status());
  ctx.bucket = std::move(*opened);
  if (catch_up && !writes && ctx.connected && !ctx.args.local) {
    // Catch the replica up so that the read sees every acknowledged write.
    const revkv::Status synced = ctx.bucket->Sync(ctx.nats.write_timeout);
    if (!synced.ok()) {
      if (synced.code() != revkv::Code::kUnavailable && synced.code() != revkv::Code::kTimeout) {
        return FailStatus(synced);
      }
      warn_stale(synced);
    }
  }
  return kExitOk;
}

}  // namespace revkv::cli
