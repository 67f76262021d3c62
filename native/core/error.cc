#include "error.h"

namespace rlhf {

const char* error_code_name(ErrorCode code) {
  static const char* const kNames[] = {
      "ERR_RLHF_INVALID_ARGUMENT", "ERR_RLHF_OUT_OF_RANGE",  "ERR_RLHF_OUT_OF_MEMORY", "ERR_RLHF_IO",
      "ERR_RLHF_FORMAT",           "ERR_RLHF_UNSUPPORTED",   "ERR_RLHF_BUSY",          "ERR_RLHF_DISPOSED",
      "ERR_RLHF_INTERNAL",         "ERR_RLHF_INVALID_STATE",
  };
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == static_cast<size_t>(ErrorCode::kCount),
                "error name table out of step with ErrorCode");
  int i = static_cast<int>(code);
  return (i >= 0 && i < static_cast<int>(ErrorCode::kCount)) ? kNames[i] : "ERR_RLHF_INTERNAL";
}

}  // namespace rlhf
