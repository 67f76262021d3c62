// Reading JS arguments in bindings. TS validates every public argument first (lib/validate.ts);
// these re-checks are cheap and exist so that a direct call into the addon can never crash the
// process. Every argument error has the one shape lib/validate.ts writes too:
//
//   gemm: expected options.lda to be an integer in [1, 2147483647], received 0
//
// TypeError for the wrong kind of value, RangeError for a bad magnitude or length.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

namespace rlhf {
namespace napi {

// A short, safe rendering of a received value, as lib/validate.ts `show` renders it: numbers and
// booleans as JS prints them, strings JSON-quoted (cut at 60 characters), `Float32Array(n)`,
// `array(n)`, `null`, `undefined`, `a function`, `an object (Tag)`.
std::string show(const Napi::Value& v);

// `where` is "<fn>: <path>" (e.g. "Model.generate: options.prompts[2]"); the message is
// "<fn>: expected <path> to be <expectation>, received <received>".
std::string expected_message(const std::string& where, const std::string& expectation, const std::string& received);
[[noreturn]] void throw_expected_type(Napi::Env env, const std::string& where, const std::string& expectation,
                                      const Napi::Value& received);
[[noreturn]] void throw_expected_range(Napi::Env env, const std::string& where, const std::string& expectation,
                                       const Napi::Value& received);
// The same with the received value already rendered (a length, a count).
[[noreturn]] void throw_expected_range(Napi::Env env, const std::string& where, const std::string& expectation,
                                       const std::string& received);

Napi::Object arg_object(const Napi::CallbackInfo& info, size_t index, const char* what);
Napi::Value field(const Napi::Object& obj, const char* fn, const char* name);  // must be present

double get_number(const Napi::Object& obj, const char* fn, const char* name);
double get_number_or(const Napi::Object& obj, const char* fn, const char* name, double fallback);
int64_t get_int(const Napi::Object& obj, const char* fn, const char* name, int64_t min, int64_t max);
int64_t get_int_or(const Napi::Object& obj, const char* fn, const char* name, int64_t min, int64_t max,
                   int64_t fallback);
bool get_bool_or(const Napi::Object& obj, const char* fn, const char* name, bool fallback);
std::string get_string(const Napi::Object& obj, const char* fn, const char* name);

// A Float32Array / Int32Array field with at least min_length elements (not detached).
Napi::Float32Array get_f32(const Napi::Object& obj, const char* fn, const char* name, size_t min_length);
Napi::Int32Array get_i32(const Napi::Object& obj, const char* fn, const char* name, size_t min_length);
Napi::Float32Array as_f32(Napi::Env env, const Napi::Value& v, const std::string& path, size_t min_length);
Napi::Int32Array as_i32(Napi::Env env, const Napi::Value& v, const std::string& path, size_t min_length);

}  // namespace napi
}  // namespace rlhf

namespace rlhf {
class Buffer;
namespace napi {
// Hands a native buffer holding n floats to JS as a Float32Array over an external ArrayBuffer
// (no copy; freed by the ArrayBuffer's finalizer). Reports the bytes to V8.
Napi::Float32Array external_f32(Napi::Env env, Buffer&& buffer, size_t n);
Napi::Uint16Array external_u16(Napi::Env env, Buffer&& buffer, size_t n);  // bf16 bits
}  // namespace napi
}  // namespace rlhf
