// Keeping the memory behind a JS typed array alive while native code uses it.
//
// A Napi::Reference keeps the typed array *object* alive, not its memory: the ArrayBuffer under
// it can still be transferred (ArrayBuffer.prototype.transfer, structuredClone/postMessage with a
// transfer list), which detaches it and hands the memory to a new ArrayBuffer that the GC may free
// while a worker thread still reads or writes it. Node-API has no call that prevents or survives
// that, so this is the addon's one use of the V8 API: a pin holds a counted reference
// (std::shared_ptr<v8::BackingStore>) to the memory itself, which outlives any detach. A job
// (async_job.h) pins every typed array it was given; an optimizer pins its target's arrays.
// After a detach the pinned memory is still valid but no longer the user's array: callers
// re-check with is_detached() before starting new work. Only exported (non-inline) V8 functions
// are called, so the result does not depend on the V8 build flags the addon is compiled with
// (node-gyp's common.gypi or cmake-js's headers alone).
#pragma once
#include <napi.h>

#include <memory>

namespace rlhf {
namespace napi {

// A shared owner of the memory of `value` when it is a TypedArray, DataView or ArrayBuffer
// (SharedArrayBuffer included); nullptr for anything else. Main thread only; the returned pointer
// may be released on any thread.
std::shared_ptr<void> pin_memory(Napi::Value value);

// True when `value` is an ArrayBuffer view whose buffer was detached (or an ArrayBuffer that was).
bool is_detached(Napi::Value value);

}  // namespace napi
}  // namespace rlhf
