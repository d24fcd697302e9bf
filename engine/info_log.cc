#include "engine/info_log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

namespace revkv::engine {
namespace {

class InfoLog final : public rocksdb::Logger {
 public:
  InfoLog(int fd, rocksdb::Env* env) : fd_(fd), env_(env) {}
  ~InfoLog() override { ::close(fd_); }

  using rocksdb::Logger::Logv;
  // The line format of RocksDB's EnvLogger: local time, thread id, message.
  void Logv(const char* format, va_list ap) override {
    timeval now{};
    gettimeofday(&now, nullptr);
    tm t{};
    localtime_r(&now.tv_sec, &t);
    char head[64];
    const int head_len = std::snprintf(
        head, sizeof(head), "%04d/%02d/%02d-%02d:%02d:%02d.%06d %llu ", t.tm_year + 1900,
        t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<int>(now.tv_usec),
        static_cast<unsigned long long>(env_->GetThreadID()));
    if (head_len <= 0) return;

    va_list copy;
    va_copy(copy, ap);
    const int body_len = std::vsnprintf(nullptr, 0, format, copy);
    va_end(copy);
    if (body_len < 0) return;
    std::vector<char> line(static_cast<size_t>(head_len) + static_cast<size_t>(body_len) + 2);
    std::memcpy(line.data(), head, static_cast<size_t>(head_len));
    std::vsnprintf(line.data() + head_len, static_cast<size_t>(body_len) + 1, format, ap);
    size_t len = static_cast<size_t>(head_len) + static_cast<size_t>(body_len);
    if (line[len - 1] != '\n') line[len++] = '\n';
    // One write with O_APPEND keeps concurrent lines whole. A failed or
    // short write (a full disk) loses this line and nothing else.
    ssize_t written;
    do {
      written = ::write(fd_, line.data(), len);
    } while (written < 0 && errno == EINTR);
  }

 private:
  const int fd_;
  rocksdb::Env* const env_;
};

}  // namespace

rocksdb::Status OpenInfoLog(rocksdb::Env* env, const std::string& dir,
                            std::shared_ptr<rocksdb::Logger>* out) {
  const std::string name = dir + "/LOG";
  if (env->FileExists(name).ok()) {
    rocksdb::Status rs =
        env->RenameFile(name, dir + "/LOG.old." + std::to_string(env->NowMicros()));
    // Someone else may have moved it meanwhile: that is as good.
    if (!rs.ok() && env->FileExists(name).ok()) return rs;
  }
  int fd;
  do {
    fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    const std::string what = "while creating the info log " + name;
    if (err == ENOSPC) return rocksdb::Status::NoSpace(what, std::strerror(err));
    return rocksdb::Status::IOError(what, std::strerror(err));
  }
  *out = std::make_shared<InfoLog>(fd, env);
  return rocksdb::Status::OK();
}

}  // namespace revkv::engine
