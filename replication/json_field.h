// A minimal reader for the flat JSON the NATS server sends (INFO lines,
// JetStream API replies), where the fields revkv reads have unique names.

#ifndef REVKV_REPLICATION_JSON_FIELD_H_
#define REVKV_REPLICATION_JSON_FIELD_H_

#include <optional>
#include <string>
#include <string_view>

namespace revkv::replication {

// The raw value of the first `"key":` in `json`: the characters of a string
// without its quotes (escapes left as they are), or a literal such as true
// or 123. Only for keys that occur once in the document.
inline std::optional<std::string_view> JsonField(std::string_view json, std::string_view key) {
  std::string quoted(1, '"');
  quoted.append(key).push_back('"');
  size_t at = json.find(quoted);
  if (at == std::string_view::npos) return std::nullopt;
  at += quoted.size();
  while (at < json.size() && (json[at] == ' ' || json[at] == ':')) ++at;
  if (at >= json.size()) return std::nullopt;
  if (json[at] == '"') {
    size_t end = at + 1;
    while (end < json.size() && json[end] != '"') end += json[end] == '\\' ? 2 : 1;
    if (end >= json.size()) return std::nullopt;
    return json.substr(at + 1, end - at - 1);
  }
  size_t end = json.find_first_of(",}]", at);
  if (end == std::string_view::npos) return std::nullopt;
  return json.substr(at, end - at);
}

}  // namespace revkv::replication

#endif  // REVKV_REPLICATION_JSON_FIELD_H_
