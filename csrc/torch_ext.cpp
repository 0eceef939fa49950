// What tch 0.24 does not expose and resnext uses, on libtorch's own C++ API: autocast for any
// device and dtype, the multi-tensor (`_foreach_*`) ops, memory formats, TF32, and the CUDA
// versions libtorch carries. The safe Rust side is `src/torch_ext/mod.rs`; the conventions are
// csrc/torch_ext.h's.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <vector>

#include "torch_ext.h"

using resnext_ext::protect;

namespace {

std::vector<at::Tensor> tensors(at::Tensor** handles, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*handles[i]);
  return out;
}

}  // namespace

extern "C" {

void ext_free_error(char* message) { std::free(message); }

// Autocast on `device_type` (c10::DeviceType) with `dtype` (c10::ScalarType) around a region:
// `enter` records the previous state for `exit`, which restores it and, leaving the outermost
// region, drops the cache of casted weights.
char* ext_autocast_enter(int device_type, int dtype, bool* was_enabled, int* was_dtype) {
  return protect([&] {
    auto device = static_cast<at::DeviceType>(device_type);
    *was_enabled = at::autocast::is_autocast_enabled(device);
    *was_dtype = static_cast<int>(at::autocast::get_autocast_dtype(device));
    at::autocast::set_autocast_dtype(device, static_cast<at::ScalarType>(dtype));
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::increment_nesting();
  });
}

char* ext_autocast_exit(int device_type, bool was_enabled, int was_dtype) {
  return protect([&] {
    auto device = static_cast<at::DeviceType>(device_type);
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device, was_enabled);
    at::autocast::set_autocast_dtype(device, static_cast<at::ScalarType>(was_dtype));
  });
}

char* ext_autocast_is_enabled(int device_type, bool* enabled) {
  return protect([&] { *enabled = at::autocast::is_autocast_enabled(static_cast<at::DeviceType>(device_type)); });
}

// selfs[i] += alpha * others[i]
char* ext_foreach_add_(at::Tensor** selfs, at::Tensor** others, size_t n, double alpha) {
  return protect([&] { at::_foreach_add_(tensors(selfs, n), tensors(others, n), alpha); });
}

// selfs[i] *= scalar
char* ext_foreach_mul_(at::Tensor** selfs, size_t n, double scalar) {
  return protect([&] { at::_foreach_mul_(tensors(selfs, n), scalar); });
}

// selfs[i] += weight * (ends[i] - selfs[i])
char* ext_foreach_lerp_(at::Tensor** selfs, at::Tensor** ends, size_t n, double weight) {
  return protect([&] { at::_foreach_lerp_(tensors(selfs, n), tensors(ends, n), weight); });
}

// outs[i] = new tensor ||tensors[i]||_2 (0-dim); the caller owns them.
char* ext_foreach_norm(at::Tensor** inputs, size_t n, at::Tensor** outs) {
  return protect([&] {
    auto norms = at::_foreach_norm(tensors(inputs, n), 2);
    for (size_t i = 0; i < n; ++i) outs[i] = new at::Tensor(norms[i]);
  });
}

// A copy (or the tensor itself) in the given memory format: 0 contiguous, 1 channels-last.
char* ext_contiguous(at::Tensor* input, int channels_last, at::Tensor** out) {
  return protect([&] {
    auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    *out = new at::Tensor(input->contiguous(format));
  });
}

char* ext_is_channels_last(at::Tensor* input, bool* channels_last) {
  return protect([&] { *channels_last = input->is_contiguous(at::MemoryFormat::ChannelsLast); });
}

// TensorFloat-32 for float32 convolutions (cuDNN) and matrix products (cuBLAS).
char* ext_set_tf32(bool enabled) {
  return protect([&] {
    at::globalContext().setAllowTF32CuDNN(enabled);
    at::globalContext().setAllowTF32CuBLAS(enabled);
  });
}

char* ext_tf32(bool* cudnn, bool* cublas) {
  return protect([&] {
    *cudnn = at::globalContext().allowTF32CuDNN();
    *cublas = at::globalContext().allowTF32CuBLAS();
  });
}

// The CUDA runtime and cuDNN versions libtorch was built with and loads (0 without CUDA).
char* ext_cuda_versions(int64_t* runtime, int64_t* cudnn) {
  return protect([&] {
    const auto& hooks = at::detail::getCUDAHooks();
    *runtime = hooks.hasCUDART() ? hooks.versionCUDART() : 0;
    *cudnn = hooks.hasCuDNN() ? hooks.versionCuDNN() : 0;
  });
}

}  // extern "C"
