// txn: the operations on standard input, committed at once.

#include <cctype>

#include "commands.h"
#include "common.h"
#include "output.h"

namespace revkv::cli {
namespace {

// What is wrong with which line of the transaction: exit 7.
int BadLine(size_t line_no, std::string_view line, const std::string& why) {
  return Fail(kExitInvalidArgument, "InvalidArgument: line " + std::to_string(line_no) +
                                        " of the transaction (" + Quote(line) + "): " + why);
}

// Calls parse(line_no, line) for every line that is not blank or a '#'
// comment; stops at the first non-zero exit code.
template <typename ParseLine>
int ForEachLine(std::string_view text, ParseLine parse) {
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    size_t first = 0;
    while (first < line.size() && std::isspace(static_cast<unsigned char>(line[first]))) ++first;
    if (first == line.size() || line[first] == '#') continue;
    if (int rc = parse(line_no, line); rc != kExitOk) return rc;
  }
  return kExitOk;
}

void AddOp(revkv::Txn* txn, const std::string& op, const std::string& key,
           const std::string& value, std::optional<uint64_t> revision) {
  if (op == "put") {
    txn->ops.push_back(revkv::TxnOp::Put(key, value));
  } else if (op == "create") {
    txn->ops.push_back(revkv::TxnOp::Create(key, value));
  } else if (op == "update") {
    txn->ops.push_back(revkv::TxnOp::Update(key, value, *revision));
  } else if (op == "delete") {
    txn->ops.push_back(revkv::TxnOp::Delete(key, revision));
  } else if (op == "purge") {
    txn->ops.push_back(revkv::TxnOp::Purge(key, revision));
  } else {
    txn->compares.push_back(*revision == 0 ? revkv::TxnCompare::Absent(key)
                                           : revkv::TxnCompare::RevisionIs(key, *revision));
  }
}

// One operation per line, its tokens separated by whitespace, in the order
// of the single-key commands: put KEY VALUE, create KEY VALUE, update KEY
// VALUE REVISION, delete KEY [REVISION], purge KEY [REVISION], check KEY
// REVISION (0: absent or tombstoned).
int ParseTxn(std::string_view text, revkv::Txn* txn) {
  return ForEachLine(text, [txn](size_t line_no, std::string_view line) {
    std::vector<std::string> tokens;
    size_t at = 0;
    while (at < line.size()) {
      while (at < line.size() && std::isspace(static_cast<unsigned char>(line[at]))) ++at;
      size_t end = at;
      while (end < line.size() && !std::isspace(static_cast<unsigned char>(line[end]))) ++end;
      if (end > at) tokens.emplace_back(line.substr(at, end - at));
      at = end;
    }
    const std::string& op = tokens[0];
    auto bad = [&](const std::string& why) { return BadLine(line_no, line, why); };
    const size_t n = tokens.size();
    std::optional<uint64_t> revision;
    if (op == "put" || op == "create") {
      if (n != 3) return bad("give " + op + " KEY VALUE");
    } else if (op == "update") {
      if (n != 4 || !(revision = ParseUint64(tokens[3]))) {
        return bad("give update KEY VALUE REVISION");
      }
    } else if (op == "delete" || op == "purge") {
      if (n == 3) revision = ParseUint64(tokens[2]);
      if (n != 2 && !(n == 3 && revision)) return bad("give " + op + " KEY [REVISION]");
    } else if (op == "check") {
      if (n != 3 || !(revision = ParseUint64(tokens[2]))) {
        return bad("give check KEY REVISION (0: absent or deleted)");
      }
    } else {
      return bad("unknown operation " + Quote(op) +
                 "; use put, create, update, delete, purge or check");
    }
    AddOp(txn, op, tokens[1], n >= 3 ? tokens[2] : std::string(), revision);
    return static_cast<int>(kExitOk);
  });
}

// One JSON object per line, as {"op":"update","key":"a","value":"v",
// "revision":5}, with the fields of the text form; "key_encoding" and
// "value_encoding" may be "base64", as `entries --json` prints bytes that
// are not UTF-8.
int ParseTxnJson(std::string_view text, revkv::Txn* txn) {
  return ForEachLine(text, [txn](size_t line_no, std::string_view line) {
    auto bad = [&](const std::string& why) { return BadLine(line_no, line, why); };
    const Json obj = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (obj.is_discarded()) return bad("not valid JSON (or not UTF-8)");
    if (!obj.is_object()) return bad("not a JSON object; give one like {\"op\":\"put\",...}");
    const auto op_field = obj.find("op");
    if (op_field == obj.end() || !op_field->is_string()) {
      return bad("no \"op\" string; give put, create, update, delete, purge or check");
    }
    const std::string op = op_field->get<std::string>();
    const bool with_value = op == "put" || op == "create" || op == "update";
    const bool tombstone = op == "delete" || op == "purge";
    if (!with_value && !tombstone && op != "check") {
      return bad("unknown op " + Quote(op) + "; use put, create, update, delete, purge or check");
    }
    const bool needs_revision = op == "update" || op == "check";
    for (const auto& item : obj.items()) {
      const std::string& name = item.key();
      const bool known = name == "op" || name == "key" || name == "key_encoding" ||
                         ((name == "value" || name == "value_encoding") && with_value) ||
                         (name == "revision" && (needs_revision || tombstone));
      if (!known) return bad("unknown field " + Quote(name) + " for op " + Quote(op));
    }
    // A string field, decoded as its "<name>_encoding" says.
    std::string why;
    auto bytes = [&](const std::string& name) -> std::optional<std::string> {
      const auto field = obj.find(name);
      if (field == obj.end()) {
        why = "no \"" + name + "\" for op " + Quote(op);
        return std::nullopt;
      }
      if (!field->is_string()) {
        why = "\"" + name + "\" is not a string";
        return std::nullopt;
      }
      const auto encoding = obj.find(name + "_encoding");
      if (encoding == obj.end()) return field->get<std::string>();
      if (!encoding->is_string() || encoding->get<std::string>() != "base64") {
        why = "\"" + name + "_encoding\" must be \"base64\" (or absent for UTF-8 text)";
        return std::nullopt;
      }
      auto decoded = DecodeBase64(field->get<std::string>());
      if (!decoded) why = "\"" + name + "\" is not valid base64";
      return decoded;
    };
    const std::optional<std::string> key = bytes("key");
    if (!key) return bad(why);
    std::optional<std::string> value;
    if (with_value && !(value = bytes("value"))) return bad(why);
    std::optional<uint64_t> revision;
    if (const auto field = obj.find("revision"); field != obj.end()) {
      if (!field->is_number_unsigned()) {
        return bad("\"revision\" is not a revision number (a whole number, 0 or more)");
      }
      revision = field->get<uint64_t>();
    } else if (needs_revision) {
      return bad("no \"revision\" for op " + Quote(op) +
                 (op == "check" ? " (0: absent or deleted)" : ""));
    }
    AddOp(txn, op, *key, value.value_or(""), revision);
    return static_cast<int>(kExitOk);
  });
}

}  // namespace

int RunTxn(Context& ctx) {
  revkv::Txn txn;
  std::string input;
  if (int rc = ReadStdin(&input); rc != kExitOk) return rc;
  if (int rc = ctx.args.json ? ParseTxnJson(input, &txn) : ParseTxn(input, &txn); rc != kExitOk) {
    return rc;
  }
  if (txn.ops.empty()) {
    return Fail(kExitInvalidArgument, "InvalidArgument: the transaction on standard input has "
                                      "no write (put, create, update, delete or purge)");
  }
  if (int rc; !Open(ctx, &rc)) return rc;
  auto done = ctx.bucket->Commit(txn, ctx.write_options);
  if (!done.ok()) return FailStatus(done.status());
  if (!ctx.args.json) {
    Write(std::to_string(done->revision) + "\n");
    return FinishOutput();
  }
  // Written by hand around Dump: a key written twice appears twice.
  std::string out = "{\"revision\":" + std::to_string(done->revision) + ",\"revisions\":{";
  for (size_t i = 0; i < txn.ops.size(); ++i) {
    if (i > 0) out += ",";
    out += Dump(Json(txn.ops[i].key)) + ":" + std::to_string(done->revisions[i]);
  }
  Write(out + "}}\n");
  return FinishOutput();
}

}  // namespace revkv::cli
