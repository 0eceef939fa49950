// The conventions of our C++ extension's functions (csrc/torch_ext.cpp, fused.cpp, recorder.cpp):
// each takes tch's tensor handles (`at::Tensor*`), catches every C++ exception and returns it as
// a message (nullptr on success) that the caller frees with `ext_free_error`: nothing unwinds
// into Rust. The safe Rust side is `src/torch_ext/`.
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>

namespace resnext_ext {

// A malloc copy of a C string, which the Rust side frees with ext_free_error.
inline char* malloc_copy(const char* message) {
  char* copy = static_cast<char*>(std::malloc(std::strlen(message) + 1));
  std::strcpy(copy, message);
  return copy;
}

template <typename F>
inline char* protect(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const std::exception& e) {
    return malloc_copy(e.what());
  } catch (...) {
    return malloc_copy("unknown C++ exception");
  }
}

}  // namespace resnext_ext
