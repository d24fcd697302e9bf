// Log: the engine's way to Options::logger. Every message the library emits
// goes through one, so that an embedder decides where it goes; without a
// logger it goes to stderr.

#ifndef REVKV_ENGINE_LOG_H_
#define REVKV_ENGINE_LOG_H_

#include <string_view>

#include "revkv/options.h"

namespace revkv::engine {

class Log {
 public:
  // Messages at or above `min` go to `sink`, or to stderr when it is empty.
  explicit Log(Logger sink = {}, LogLevel min = LogLevel::kInfo)
      : sink_(std::move(sink)), min_(min) {}
  // `options.logger` at `options.log_level`.
  static Log From(const Options& options) { return Log(options.logger, options.log_level); }

  bool Enabled(LogLevel level) const { return level >= min_; }
  void operator()(LogLevel level, std::string_view message) const;
  void Warning(std::string_view message) const { (*this)(LogLevel::kWarning, message); }
  void Error(std::string_view message) const { (*this)(LogLevel::kError, message); }
  void Info(std::string_view message) const { (*this)(LogLevel::kInfo, message); }

 private:
  Logger sink_;
  LogLevel min_;
};

}  // namespace revkv::engine

#endif  // REVKV_ENGINE_LOG_H_
