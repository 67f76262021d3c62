// Engine errors: every failure in native code is a C++ exception of type rlhf::Error carrying a
// code and a message with the file:line that raised it. The N-API layer turns it into a JS
// exception (TypeError/RangeError for argument errors, Error with `.code` otherwise). Native code
// never calls abort() or exit(): the addon runs inside someone else's process.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace rlhf {

// Mirrored in lib/errors.ts (ErrorCode); keep the two lists in the same order.
enum class ErrorCode : int {
  InvalidArgument = 0,  // wrong kind of value (JS TypeError)
  OutOfRange,           // right kind, bad magnitude or shape (JS RangeError)
  OutOfMemory,
  Io,            // file system failure
  Format,        // malformed file contents (safetensors, config.json)
  Unsupported,   // valid request the engine does not implement (architecture, dtype)
  Busy,          // a second concurrent call on an object that allows one at a time
  Disposed,      // use after dispose()
  Internal,      // a broken invariant: a bug in the engine
  InvalidState,  // a call the object's state does not allow now (backward without a new forward)
  kCount
};

const char* error_code_name(ErrorCode code);  // e.g. "ERR_RLHF_OUT_OF_RANGE"

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

namespace detail {
template <typename... Args>
[[noreturn]] void throw_error(ErrorCode code, const char* file, int line, const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  const char* base = file;
  for (const char* p = file; *p; ++p)
    if (*p == '/' || *p == '\\') base = p + 1;
  os << " (" << base << ":" << line << ")";
  throw Error(code, os.str());
}
}  // namespace detail

}  // namespace rlhf

// RLHF_CHECK(cond, ErrorCode::X, "message parts", value, ...): throws rlhf::Error when !cond.
#define RLHF_CHECK(cond, code, ...)                                                    \
  do {                                                                                 \
    if (!(cond)) ::rlhf::detail::throw_error((code), __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
#define RLHF_FAIL(code, ...) ::rlhf::detail::throw_error((code), __FILE__, __LINE__, __VA_ARGS__)
