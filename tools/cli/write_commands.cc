// put, create, update, delete, purge: each prints the revision it wrote.

#include "commands.h"
#include "common.h"

namespace revkv::cli {
namespace {

template <typename WriteFn>
int WriteAndPrint(Context& ctx, WriteFn write) {
  if (int rc; !Open(ctx, &rc)) return rc;
  const revkv::Result<uint64_t> r = write(*ctx.bucket);
  if (!r.ok()) return FailStatus(r.status());
  Write(std::to_string(*r) + "\n");
  return FinishOutput();
}

}  // namespace

int RunPut(Context& ctx) {
  return WriteAndPrint(ctx, [&](revkv::Bucket& b) {
    return b.Put(ctx.key(), ctx.value, ctx.write_options);
  });
}

int RunCreate(Context& ctx) {
  return WriteAndPrint(ctx, [&](revkv::Bucket& b) {
    return b.Create(ctx.key(), ctx.value, ctx.write_options);
  });
}

int RunUpdate(Context& ctx) {
  return WriteAndPrint(ctx, [&](revkv::Bucket& b) {
    return b.Update(ctx.key(), ctx.value, *ctx.expected_revision, ctx.write_options);
  });
}

int RunDelete(Context& ctx) {
  return WriteAndPrint(ctx, [&](revkv::Bucket& b) {
    return b.Delete(ctx.key(), ctx.expected_revision, ctx.write_options);
  });
}

int RunPurge(Context& ctx) {
  return WriteAndPrint(ctx, [&](revkv::Bucket& b) {
    return b.Purge(ctx.key(), ctx.expected_revision, ctx.write_options);
  });
}

}  // namespace revkv::cli
