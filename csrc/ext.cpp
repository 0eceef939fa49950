// What tch 0.24 does not expose and resnext uses, on libtorch's own C++ API. Each function
// takes tch's tensor handles (`at::Tensor*`), catches every C++ exception and returns it as a
// message (nullptr on success) that the caller frees with `ext_free_error`: nothing unwinds
// into Rust. The safe Rust side is `src/torch_ext.rs`.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/record_function.h>

#include <atomic>
#include <cstring>
#include <vector>

namespace {

char* error_copy(const char* message) {
  char* copy = static_cast<char*>(std::malloc(std::strlen(message) + 1));
  std::strcpy(copy, message);
  return copy;
}

template <typename F>
char* protect(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const std::exception& e) {
    return error_copy(e.what());
  } catch (...) {
    return error_copy("unknown C++ exception");
  }
}

std::vector<at::Tensor> tensors(at::Tensor** handles, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*handles[i]);
  return out;
}

// Op counter: outermost ATen operator calls (an op's nested calls, such as conv2d ->
// convolution -> mkldnn_convolution, are not counted again). The callback is thread-local, and
// the autograd engine carries thread-local state to the threads it runs backward on, so the
// count covers the counting thread's forward and backward and nothing other threads do.
std::atomic<uint64_t> op_count{0};
thread_local int op_depth = 0;
at::CallbackHandle op_callback = 0;

// Only dispatched operators have an operator name: the autograd engine's own records around
// each backward node ("autograd::engine::evaluate_function: ...") do not, and the operators
// those nodes call count as outermost.
bool is_operator(const at::RecordFunction& fn) { return fn.operator_name().has_value(); }

std::unique_ptr<at::ObserverContext> op_start(const at::RecordFunction& fn) {
  if (!is_operator(fn)) return nullptr;
  if (op_depth++ == 0) op_count.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

void op_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (is_operator(fn)) --op_depth;
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

char* ext_cudnn_benchmark(bool* enabled) {
  return protect([&] { *enabled = at::globalContext().benchmarkCuDNN(); });
}

char* ext_op_counter_start() {
  return protect([&] {
    if (op_callback != 0) throw std::runtime_error("the op counter is already running");
    op_count = 0;
    op_callback = at::addThreadLocalCallback(
        at::RecordFunctionCallback(op_start, op_end).needsInputs(false).needsOutputs(false).needsIds(false).scopes(
            {at::RecordScope::FUNCTION}));
  });
}

char* ext_op_counter_stop(uint64_t* count) {
  return protect([&] {
    if (op_callback == 0) throw std::runtime_error("the op counter is not running");
    at::removeCallback(op_callback);
    op_callback = 0;
    *count = op_count.load();
  });
}

}  // extern "C"
