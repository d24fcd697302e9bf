#include "replication/nats_status.h"

#include <string>

namespace revkv::replication {

Status FromNats(natsStatus s, std::string_view context, jsErrCode jerr) {
  if (s == NATS_OK) return Status::OK();
  std::string msg(context);
  msg += ": ";
  msg += natsStatus_GetText(s);
  // nats.c keeps the last error of each thread until the next one: its text
  // belongs to this failure only if its status is this one's.
  natsStatus last_status = NATS_OK;
  const char* detail = nats_GetLastError(&last_status);
  std::string last = detail != nullptr && last_status == s ? detail : "";
  if (!last.empty() && last != natsStatus_GetText(s)) {
    msg += " (";
    msg += last;
    msg += ")";
  }
  // Elections and overload: nothing was done, retry later. A
  // request nobody answered comes first: nats.c labels it JSNotEnabledErr,
  // but during a stream's leader election it only means "no leader yet".
  if (s == NATS_NO_RESPONDERS) {
    return Status::Unavailable(msg + "; no JetStream server answered: the stream may be "
                                     "electing a leader (retry shortly), or JetStream is not "
                                     "enabled on the server");
  }
  if (jerr == JSClusterNotAvailErr || jerr == JSClusterNotLeaderErr ||
      static_cast<int>(jerr) == kJsExpectedSequenceNotReady ||
      jerr == JSStreamOfflineErr || static_cast<int>(jerr) == kJsStreamOfflineReason ||
      jerr == JSInsufficientResourcesErr) {
    return Status::Unavailable(msg + "; the JetStream cluster cannot serve the bucket now "
                                     "(leader election, offline peers or full storage); retry "
                                     "later");
  }
  if (static_cast<int>(jerr) == kJsTooManyRequests) {
    return Status::Busy(msg + "; the stream's leader is overloaded and stored nothing; retry "
                              "with backoff");
  }
  if (jerr == JSStreamWrongLastSequenceErr) return Status::Conflict(msg);
  if (static_cast<int>(jerr) == kJsWrongLastSequenceInFlight) {
    return Status::ConflictRevisionUnknown(msg + "; sync the replica, re-read the key and retry");
  }
  if (jerr == JSStreamNotFoundErr) return Status::NotFound(msg);
  if (jerr == JSNotEnabledErr || jerr == JSNotEnabledForAccountErr) {
    return Status::Unavailable(msg + "; enable JetStream on the server");
  }
  if (last.find("Permissions Violation") != std::string::npos ||
      last.find("permissions violation") != std::string::npos) {
    return Status::PermissionDenied(msg + "; grant the user publish/subscribe rights on the "
                                          "bucket's subjects");
  }
  switch (s) {
    case NATS_TIMEOUT: return Status::Timeout(msg);
    case NATS_NOT_FOUND: return Status::NotFound(msg);
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT: return Status::InvalidArgument(msg);
    case NATS_CONNECTION_AUTH_FAILED:
      return Status::PermissionDenied(msg + "; check the user, password, token or creds file");
    case NATS_NOT_PERMITTED: return Status::PermissionDenied(msg);
    // NATS_IO_ERROR is a failed socket read or write: the connection broke
    // under the call (a server going away gives EPIPE), not a local file
    // system error, so it is retried like any lost connection.
    case NATS_IO_ERROR:
    case NATS_NO_SERVER:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_STALE_CONNECTION:
    case NATS_NO_RESPONDERS:
      return Status::Unavailable(msg + "; check that the NATS server runs and is reachable");
    case NATS_MAX_PAYLOAD:
      return Status::InvalidArgument(msg + "; the value is larger than the server's max_payload");
    default: return Status::IOError(msg);
  }
}

}  // namespace revkv::replication

namespace revkv::replication {

bool PublishNotStoredAndRetryable(natsStatus s, jsErrCode jerr) {
  return s == NATS_NO_RESPONDERS || static_cast<int>(jerr) == kJsTooManyRequests ||
         static_cast<int>(jerr) == kJsExpectedSequenceNotReady;
}

}  // namespace revkv::replication
