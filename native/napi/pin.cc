#include "pin.h"

#include <v8.h>

#include <cstring>

namespace rlhf {
namespace napi {

namespace {
// napi_value is V8's handle (Node's v8impl::V8LocalValueFromJsValue does the same copy).
v8::Local<v8::Value> to_v8(napi_value v) {
  static_assert(sizeof(v8::Local<v8::Value>) == sizeof(napi_value), "napi_value is not a v8::Local");
  v8::Local<v8::Value> local;
  std::memcpy(static_cast<void*>(&local), &v, sizeof(v));
  return local;
}
}  // namespace

std::shared_ptr<void> pin_memory(Napi::Value value) {
  if (value.IsEmpty()) return nullptr;
  v8::Local<v8::Value> v = to_v8(value);
  std::shared_ptr<v8::BackingStore> store;
  if (v->IsArrayBufferView()) {
    v8::Local<v8::ArrayBufferView> view = v.As<v8::ArrayBufferView>();
    if (view->Buffer()->IsSharedArrayBuffer())
      store = v8::Local<v8::SharedArrayBuffer>::Cast(view->Buffer())->GetBackingStore();
    else
      store = view->Buffer()->GetBackingStore();
  } else if (v->IsArrayBuffer()) {
    store = v.As<v8::ArrayBuffer>()->GetBackingStore();
  } else if (v->IsSharedArrayBuffer()) {
    store = v.As<v8::SharedArrayBuffer>()->GetBackingStore();
  }
  return store;
}

bool is_detached(Napi::Value value) {
  if (value.IsEmpty()) return false;
  v8::Local<v8::Value> v = to_v8(value);
  if (v->IsArrayBufferView()) {
    v8::Local<v8::ArrayBufferView> view = v.As<v8::ArrayBufferView>();
    return view->Buffer()->WasDetached();
  }
  if (v->IsArrayBuffer()) return v.As<v8::ArrayBuffer>()->WasDetached();
  return false;
}

}  // namespace napi
}  // namespace rlhf
