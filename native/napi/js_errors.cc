#include "js_errors.h"

namespace rlhf {
namespace napi {

namespace {
// lib/errors.ts RlhfError, for the env that registered it (the addon's other envs, such as
// worker threads that load it too, get plain Errors with .code).
Napi::FunctionReference* g_error_class = nullptr;

Napi::Value set_error_class(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) throw_type_error(info.Env(), "setErrorClass: expected a class");
  if (!g_error_class) g_error_class = new Napi::FunctionReference(Napi::Persistent(info[0].As<Napi::Function>()));
  return info.Env().Undefined();
}
}  // namespace

void register_errors(Napi::Env env, Napi::Object exports) {
  exports.Set("setErrorClass", Napi::Function::New(env, set_error_class, "setErrorClass"));
}

Napi::Error make_js_error(Napi::Env env, ErrorCode code, const std::string& message) {
  Napi::Error err;
  const Napi::String name = Napi::String::New(env, error_code_name(code));
  if (code == ErrorCode::InvalidArgument)
    err = Napi::TypeError::New(env, message);
  else if (code == ErrorCode::OutOfRange)
    err = Napi::RangeError::New(env, message);
  else if (g_error_class && static_cast<napi_env>(g_error_class->Env()) == static_cast<napi_env>(env)) {
    try {
      return Napi::Error(env, g_error_class->New({name, Napi::String::New(env, message)}));
    } catch (const Napi::Error&) {
      err = Napi::Error::New(env, message);  // the class threw: fall back to a plain coded Error
    }
  } else
    err = Napi::Error::New(env, message);
  err.Set("code", name);
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
