#include "args.h"

#include <cmath>

#include "js_errors.h"

namespace rlhf {
namespace napi {

namespace {
std::string path(const char* fn, const char* name) { return std::string(fn) + ": options." + name; }
}  // namespace

Napi::Object arg_object(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsObject())
    throw_type_error(info.Env(), std::string(what) + " must be an object");
  return info[index].As<Napi::Object>();
}

Napi::Value field(const Napi::Object& obj, const char* fn, const char* name) {
  Napi::Value v = obj.Get(name);
  if (v.IsUndefined()) throw_type_error(obj.Env(), path(fn, name) + " is required");
  return v;
}

double get_number(const Napi::Object& obj, const char* fn, const char* name) {
  Napi::Value v = field(obj, fn, name);
  if (!v.IsNumber()) throw_type_error(obj.Env(), path(fn, name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (std::isnan(d)) throw_range_error(obj.Env(), path(fn, name) + " must not be NaN");
  return d;
}

double get_number_or(const Napi::Object& obj, const char* fn, const char* name, double fallback) {
  if (obj.Get(name).IsUndefined()) return fallback;
  return get_number(obj, fn, name);
}

int64_t get_int(const Napi::Object& obj, const char* fn, const char* name, int64_t min, int64_t max) {
  double d = get_number(obj, fn, name);
  if (d != std::floor(d) || !std::isfinite(d)) throw_type_error(obj.Env(), path(fn, name) + " must be an integer");
  if (d < static_cast<double>(min) || d > static_cast<double>(max))
    throw_range_error(obj.Env(), path(fn, name) + " must be in [" + std::to_string(min) + ", " + std::to_string(max) +
                                     "], got " + std::to_string(static_cast<int64_t>(d)));
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
  if (!v.IsBoolean()) throw_type_error(obj.Env(), path(fn, name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string get_string(const Napi::Object& obj, const char* fn, const char* name) {
  Napi::Value v = field(obj, fn, name);
  if (!v.IsString()) throw_type_error(obj.Env(), path(fn, name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Float32Array as_f32(Napi::Env env, const Napi::Value& v, const std::string& p, size_t min_length) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_type_error(env, p + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() < min_length)
    throw_range_error(env, p + " must have at least " + std::to_string(min_length) + " elements, got " +
                               std::to_string(a.ElementLength()));
  if (min_length > 0 && a.Data() == nullptr) throw_type_error(env, p + " is detached");
  return a;
}

Napi::Int32Array as_i32(Napi::Env env, const Napi::Value& v, const std::string& p, size_t min_length) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_type_error(env, p + " must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  if (a.ElementLength() < min_length)
    throw_range_error(env, p + " must have at least " + std::to_string(min_length) + " elements, got " +
                               std::to_string(a.ElementLength()));
  if (min_length > 0 && a.Data() == nullptr) throw_type_error(env, p + " is detached");
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

Napi::Float32Array external_f32(Napi::Env env, Buffer&& buffer, size_t n) {
  if (n == 0) return Napi::Float32Array::New(env, 0);
  auto* owned = new Buffer(std::move(buffer));
  const size_t bytes = n * sizeof(float);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, owned->data(), bytes,
      [](Napi::Env e, void*, Buffer* b) {
        Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(b->bytes()));
        delete b;
      },
      owned);
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(owned->bytes()));
  return Napi::Float32Array::New(env, n, ab, 0);
}

}  // namespace napi
}  // namespace rlhf
