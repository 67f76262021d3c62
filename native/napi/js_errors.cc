#include "js_errors.h"

namespace rlhf {
namespace napi {

Napi::Error make_js_error(Napi::Env env, ErrorCode code, const std::string& message) {
  Napi::Error err;
  if (code == ErrorCode::InvalidArgument)
    err = Napi::TypeError::New(env, message);
  else if (code == ErrorCode::OutOfRange)
    err = Napi::RangeError::New(env, message);
  else
    err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, error_code_name(code)));
  return err;
}

void throw_type_error(Napi::Env env, const std::string& message) {
  throw make_js_error(env, ErrorCode::InvalidArgument, message);
}

void throw_range_error(Napi::Env env, const std::string& message) {
  throw make_js_error(env, ErrorCode::OutOfRange, message);
}

}  // namespace napi
}  // namespace rlhf
