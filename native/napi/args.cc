#include "args.h"

#include <cmath>

#include "js_errors.h"

namespace rlhf {
namespace napi {

namespace {
std::string path(const char* fn, const char* name) { return std::string(fn) + ": options." + name; }

std::string count(size_t n) { return std::to_string(n) + (n == 1 ? " element" : " elements"); }
}  // namespace

std::string show(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsString()) {
    // cut in UTF-16 code units, as String.prototype.slice does
    std::u16string s = v.As<Napi::String>().Utf16Value();
    if (s.size() > 60) s = s.substr(0, 57) + u"...";
    Napi::Object json = v.Env().Global().Get("JSON").As<Napi::Object>();
    return json.Get("stringify").As<Napi::Function>().Call(json, {Napi::String::New(v.Env(), s)}).ToString();
  }
  if (v.IsNumber() || v.IsBoolean() || v.IsBigInt()) return v.ToString().Utf8Value();
  if (v.IsTypedArray() || v.IsDataView()) {
    Napi::Object o = v.As<Napi::Object>();
    std::string ctor = o.Get("constructor").As<Napi::Object>().Get("name").ToString().Utf8Value();
    return ctor + "(" + o.Get(v.IsTypedArray() ? "length" : "byteLength").ToString().Utf8Value() + ")";
  }
  if (v.IsArray()) return "array(" + std::to_string(v.As<Napi::Array>().Length()) + ")";
  if (v.IsFunction()) return "a function";
  // Object.prototype.toString gives "[object Tag]"
  Napi::Object proto = v.Env().Global().Get("Object").As<Napi::Object>().Get("prototype").As<Napi::Object>();
  std::string tag = proto.Get("toString").As<Napi::Function>().Call(v, {}).ToString().Utf8Value();
  return "an object (" + (tag.size() > 9 ? tag.substr(8, tag.size() - 9) : tag) + ")";
}

std::string expected_message(const std::string& where, const std::string& expectation, const std::string& received) {
  const size_t colon = where.find(": ");
  const std::string fn = colon == std::string::npos ? std::string() : where.substr(0, colon + 2);
  const std::string what = colon == std::string::npos ? where : where.substr(colon + 2);
  return fn + "expected " + what + " to be " + expectation + ", received " + received;
}

void throw_expected_type(Napi::Env env, const std::string& where, const std::string& expectation,
                         const Napi::Value& received) {
  throw_type_error(env, expected_message(where, expectation, show(received)));
}

void throw_expected_range(Napi::Env env, const std::string& where, const std::string& expectation,
                          const Napi::Value& received) {
  throw_range_error(env, expected_message(where, expectation, show(received)));
}

void throw_expected_range(Napi::Env env, const std::string& where, const std::string& expectation,
                          const std::string& received) {
  throw_range_error(env, expected_message(where, expectation, received));
}

Napi::Object arg_object(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsObject())
    throw_expected_type(info.Env(), what, "an object", info.Length() > index ? info[index] : info.Env().Undefined());
  return info[index].As<Napi::Object>();
}

Napi::Value field(const Napi::Object& obj, const char* fn, const char* name) {
  Napi::Value v = obj.Get(name);
  if (v.IsUndefined()) throw_expected_type(obj.Env(), path(fn, name), "present", v);
  return v;
}

double get_number(const Napi::Object& obj, const char* fn, const char* name) {
  Napi::Value v = field(obj, fn, name);
  if (!v.IsNumber()) throw_expected_type(obj.Env(), path(fn, name), "a number", v);
  double d = v.As<Napi::Number>().DoubleValue();
  if (std::isnan(d)) throw_expected_range(obj.Env(), path(fn, name), "a number (not NaN)", v);
  return d;
}

double get_number_or(const Napi::Object& obj, const char* fn, const char* name, double fallback) {
  if (obj.Get(name).IsUndefined()) return fallback;
  return get_number(obj, fn, name);
}

int64_t get_int(const Napi::Object& obj, const char* fn, const char* name, int64_t min, int64_t max) {
  double d = get_number(obj, fn, name);
  const std::string expectation = "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  if (d != std::floor(d) || !std::isfinite(d))
    throw_expected_type(obj.Env(), path(fn, name), expectation, obj.Get(name));
  if (d < static_cast<double>(min) || d > static_cast<double>(max))
    throw_expected_range(obj.Env(), path(fn, name), expectation, obj.Get(name));
  return static_cast<int64_t>(d);
}

int64_t get_int_or(const Napi::Object& obj, const char* fn, const char* name, int64_t min, int64_t max,
                   int64_t fallback) {
  if (obj.Get(name).IsUndefined()) return fallback;
  return get_int(obj, fn, name, min, max);
}

bool get_bool_or(const Napi::Object& obj, const char* fn, const char* name, bool fallback) {
  Napi::Value v = obj.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw_expected_type(obj.Env(), path(fn, name), "a boolean", v);
  return v.As<Napi::Boolean>().Value();
}

std::string get_string(const Napi::Object& obj, const char* fn, const char* name) {
  Napi::Value v = field(obj, fn, name);
  if (!v.IsString()) throw_expected_type(obj.Env(), path(fn, name), "a string", v);
  return v.As<Napi::String>().Utf8Value();
}

Napi::Float32Array as_f32(Napi::Env env, const Napi::Value& v, const std::string& p, size_t min_length) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_expected_type(env, p, "a Float32Array", v);
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() < min_length)
    throw_expected_range(env, p, "a Float32Array of at least " + count(min_length), v);
  if (min_length > 0 && a.Data() == nullptr) throw_expected_type(env, p, "a Float32Array (not detached)", v);
  return a;
}

Napi::Int32Array as_i32(Napi::Env env, const Napi::Value& v, const std::string& p, size_t min_length) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_expected_type(env, p, "an Int32Array", v);
  auto a = v.As<Napi::Int32Array>();
  if (a.ElementLength() < min_length) throw_expected_range(env, p, "an Int32Array of at least " + count(min_length), v);
  if (min_length > 0 && a.Data() == nullptr) throw_expected_type(env, p, "an Int32Array (not detached)", v);
  return a;
}

Napi::Float32Array get_f32(const Napi::Object& obj, const char* fn, const char* name, size_t min_length) {
  return as_f32(obj.Env(), field(obj, fn, name), path(fn, name), min_length);
}

Napi::Int32Array get_i32(const Napi::Object& obj, const char* fn, const char* name, size_t min_length) {
  return as_i32(obj.Env(), field(obj, fn, name), path(fn, name), min_length);
}

}  // namespace napi
}  // namespace rlhf

#include "../core/buffer.h"

namespace rlhf {
namespace napi {

namespace {
Napi::ArrayBuffer external_bytes(Napi::Env env, Buffer&& buffer, size_t bytes) {
  auto* owned = new Buffer(std::move(buffer));
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, owned->data(), bytes,
      [](Napi::Env e, void*, Buffer* b) {
        Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(b->bytes()));
        delete b;
      },
      owned);
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(owned->bytes()));
  return ab;
}
}  // namespace

Napi::Float32Array external_f32(Napi::Env env, Buffer&& buffer, size_t n) {
  if (n == 0) return Napi::Float32Array::New(env, 0);
  return Napi::Float32Array::New(env, n, external_bytes(env, std::move(buffer), n * sizeof(float)), 0);
}

Napi::Uint16Array external_u16(Napi::Env env, Buffer&& buffer, size_t n) {
  if (n == 0) return Napi::Uint16Array::New(env, 0);
  return Napi::Uint16Array::New(env, n, external_bytes(env, std::move(buffer), n * sizeof(uint16_t)), 0);
}

}  // namespace napi
}  // namespace rlhf
