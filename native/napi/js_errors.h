// Turning engine failures into JS exceptions. Argument errors become TypeError (wrong kind) or
// RangeError (bad magnitude/shape) naming the field; every other rlhf::Error becomes an RlhfError
// whose `.code` is the engine code (ERR_RLHF_*). Nothing here ends the process.
#pragma once
#include <napi.h>

#include <string>

#include "../core/error.h"

namespace rlhf {
namespace napi {

// A JS error object for an engine error code and message: TypeError (InvalidArgument) or
// RangeError (OutOfRange) naming the field, with .code; every other code an instance of the
// class registered by setErrorClass (lib/errors.ts RlhfError, constructed as new C(code, message)),
// or a plain Error with .code before one is registered.
Napi::Error make_js_error(Napi::Env env, ErrorCode code, const std::string& message);

// exports.setErrorClass(RlhfError): lib/native.ts calls it once, right after loading the addon.
void register_errors(Napi::Env env, Napi::Object exports);

[[noreturn]] void throw_type_error(Napi::Env env, const std::string& message);
[[noreturn]] void throw_range_error(Napi::Env env, const std::string& message);

// Wraps a binding so that rlhf::Error and std::exception thrown synchronously become JS
// exceptions with codes instead of escaping as "unknown C++ exception".
template <typename F>
Napi::Value guard(const Napi::CallbackInfo& info, F&& f) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    throw make_js_error(info.Env(), e.code(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_js_error(info.Env(), ErrorCode::OutOfMemory, "out of memory");
  } catch (const std::exception& e) {
    throw make_js_error(info.Env(), ErrorCode::Internal, e.what());
  }
}

}  // namespace napi
}  // namespace rlhf
