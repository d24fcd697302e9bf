#include "args.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <string_view>
#include <utility>

namespace revkv::cli {
namespace {

// CLI11 reads "-x" as a short option, and revkv has none but -h: a value or
// a key may start with '-'. Such words pass through CLI11 behind a NUL,
// which no argv string can hold, and lose it afterwards.
constexpr char kEscape = '\0';

bool LooksShort(std::string_view word) {
  return word.size() > 1 && word[0] == '-' && word[1] != '-' && word != "-h";
}

std::string Unescape(std::string word) {
  if (!word.empty() && word[0] == kEscape) word.erase(0, 1);
  return word;
}

}  // namespace

std::string ParseArgs(int argc, char** argv, Args* args) {
  CLI::App app{"revkv", "revkv"};
  app.set_help_flag();  // revkv prints its own help, per command too
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  bool help_flag = false;
  app.add_flag("-h,--help", help_flag)->disable_flag_override();
  const std::pair<const char*, bool*> flags[] = {
      {"--json", &args->json},   {"--sync", &args->sync},
      {"--local", &args->local}, {"--allow-atomic", &args->allow_atomic},
      {"--version", &args->version}, {"--disk-usage", &args->disk_usage}};
  for (const auto& [name, target] : flags) app.add_flag(name, *target)->disable_flag_override();

  // A value that looks like the next flag means the value was forgotten:
  // swallowing it would only produce a stranger error later.
  const CLI::Validator needs_value(
      [](std::string& value) {
        return value.starts_with("--") ? std::string("needs a value, not ") + value : std::string();
      },
      "");
  const std::pair<const char*, std::optional<std::string>*> options[] = {
      {"--db", &args->db},
      {"--bucket", &args->bucket},
      {"--user", &args->user},
      {"--password", &args->password},
      {"--token", &args->token},
      {"--creds", &args->creds},
      {"--tls-ca", &args->tls_ca},
      {"--tls-cert", &args->tls_cert},
      {"--tls-key", &args->tls_key},
      {"--write-timeout", &args->write_timeout},
      {"--history", &args->history},
      {"--revision", &args->revision},
      {"--lease", &args->lease},
      {"--timeout", &args->timeout},
      {"--ttl", &args->ttl},
      {"--limit-marker-ttl", &args->limit_marker_ttl},
      {"--locks-bucket", &args->locks_bucket},
      {"--fence", &args->fence}};
  for (const auto& [name, target] : options) {
    app.add_option_function<std::string>(
           name, [target](const std::string& value) { *target = Unescape(value); })
        ->check(needs_value);
  }
  std::vector<std::string> nats;  // repeatable, each maybe a comma list
  app.add_option("--nats", nats)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->check(needs_value);
  std::vector<std::string> positional;
  app.add_option("args", positional);

  // Everything after the first "--" is positional, verbatim: for lock, CMD.
  std::vector<std::string> words;
  std::vector<std::string> rest;
  int i = 1;
  for (; i < argc && std::string_view(argv[i]) != "--"; ++i) {
    std::string word = argv[i];
    if (word == "-h" || word == "--help") args->help = true;
    // "--flag=" is an empty value, which CLI11 would take from the next word.
    if (word.starts_with("--") && word.ends_with("=")) {
      const auto* option = app.get_option_no_throw(word.substr(0, word.size() - 1));
      if (option != nullptr && option->get_type_size() > 0) {
        words.push_back(word.substr(0, word.size() - 1));
        words.emplace_back();
        continue;
      }
    }
    if (LooksShort(word)) word.insert(word.begin(), kEscape);
    words.push_back(std::move(word));
  }
  if (i < argc) rest.assign(argv + i + 1, argv + argc);

  std::reverse(words.begin(), words.end());
  try {
    app.parse(words);
  } catch (const CLI::ParseError& e) {
    // Every CLI11 error is a usage error, exit 1 (never CLI11's own codes).
    return e.what();
  }
  for (std::string& word : positional) args->positional.push_back(Unescape(std::move(word)));
  if (i < argc) {
    args->separator = args->positional.size();
    args->positional.insert(args->positional.end(), rest.begin(), rest.end());
  }
  for (const std::string& raw : nats) {
    const std::string unescaped = Unescape(raw);
    std::string_view list = unescaped;
    while (true) {
      const size_t comma = list.find(',');
      const std::string_view url = list.substr(0, comma);
      if (url.empty()) return "--nats needs a server URL, not an empty string";
      args->nats.emplace_back(url);
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  return "";
}

}  // namespace revkv::cli
