#include "replication/capabilities.h"

#include <string>

namespace revkv::replication {

const Capability& CapabilityOf(Feature feature) {
  for (const Capability& c : kCapabilities) {
    if (c.feature == feature) return c;
  }
  // Every Feature has a row; a missing one is a programming error caught by
  // the capability tests.
  return kCapabilities[0];
}

bool Supports(const ServerVersion& version, Feature feature) {
  const ServerVersion& min = CapabilityOf(feature).minimum;
  return version.AtLeast(min.major, min.minor, min.patch);
}

Status Require(Feature feature, const ServerInfo& server, std::string_view context) {
  if (Supports(server.version, feature)) return Status::OK();
  const Capability& c = CapabilityOf(feature);
  std::string msg(context);
  if (!msg.empty()) msg += ": ";
  msg += std::string(c.what) + " needs nats-server " + c.minimum.ToString() +
         " or newer, and the server is " +
         (server.version_text.empty() ? server.version.ToString() : server.version_text) +
         "; upgrade the server";
  if (feature == Feature::kClusteredCas) {
    msg += " (before 2.9.21 two compare-and-swap writers can both succeed) or use a "
           "single-replica bucket";
  }
  return Status::InvalidArgument(msg);
}

}  // namespace revkv::replication
