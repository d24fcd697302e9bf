#include "revkv/version.h"

namespace revkv {

const char* Version() { return REVKV_VERSION; }

}  // namespace revkv
