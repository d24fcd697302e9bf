#include "engine/log.h"

#include <cstdio>
#include <string>

namespace revkv {

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "unknown";
}

namespace engine {

void Log::operator()(LogLevel level, std::string_view message) const {
  if (!Enabled(level)) return;
  if (sink_) {
    sink_(level, message);
    return;
  }
  // The default logger, and the one place the library writes to stderr.
  // One fprintf call per line, so lines of concurrent threads do not mix.
  std::fprintf(stderr, "revkv: %s: %.*s\n", LogLevelName(level),
               static_cast<int>(message.size()), message.data());
}

}  // namespace engine
}  // namespace revkv
