// What tch 0.24 does not expose and resnext uses, on libtorch's own C++ API. Each function
// takes tch's tensor handles (`at::Tensor*`), catches every C++ exception and returns it as a
// message (nullptr on success) that the caller frees with `ext_free_error`: nothing unwinds
// into Rust. The safe Rust side is `src/torch_ext.rs`.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "bn_relu_kernels.h"

namespace {

// A malloc copy of a C string, which the Rust side frees with ext_free_error.
char* malloc_copy(const char* message) {
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
    return malloc_copy(e.what());
  } catch (...) {
    return malloc_copy("unknown C++ exception");
  }
}

std::vector<at::Tensor> tensors(at::Tensor** handles, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*handles[i]);
  return out;
}

// Op recorder: every ATen operator call (and our own ops, recorded under "resnext::" names) by
// name, with its calls, how many of them were outermost (an op's nested calls, such as conv2d
// -> convolution -> mkldnn_convolution, are not outermost) and its self time (its own time less
// that of the ops it called), as torch.profiler's "self CPU" column. The callback is
// thread-local, and the autograd engine carries thread-local state to the threads it runs
// backward on, so the record covers the recording thread's forward and backward and nothing
// other threads do.
struct OpRecord {
  uint64_t calls = 0;
  uint64_t outermost = 0;
  int64_t self_ns = 0;
};
std::mutex records_mutex;
std::map<std::string, OpRecord> records;
at::CallbackHandle recorder = 0;

struct Frame {
  int64_t start_ns;
  int64_t children_ns;
};
thread_local std::vector<Frame> frames;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Only dispatched operators have an operator name: the autograd engine's own records around
// each backward node ("autograd::engine::evaluate_function: ...") do not, and the operators
// those nodes call count as outermost. Our ops are user-scope records.
bool is_operator(const at::RecordFunction& fn) {
  return fn.operator_name().has_value() || fn.scope() == at::RecordScope::USER_SCOPE;
}

std::unique_ptr<at::ObserverContext> op_start(const at::RecordFunction& fn) {
  if (is_operator(fn)) frames.push_back({now_ns(), 0});
  return nullptr;
}

void op_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (!is_operator(fn) || frames.empty()) return;
  const Frame frame = frames.back();
  frames.pop_back();
  const int64_t total = now_ns() - frame.start_ns;
  if (!frames.empty()) frames.back().children_ns += total;
  std::lock_guard<std::mutex> lock(records_mutex);
  OpRecord& record = records[fn.name()];
  record.calls += 1;
  record.outermost += frames.empty();
  record.self_ns += std::max<int64_t>(0, total - frame.children_ns);
}

// ---- Fused BatchNorm -> (+ shortcut) -> ReLU, for training on the CPU ----
//
// Keras's BatchNormalization in training (batch statistics, biased variance to normalise,
// unbiased variance into the moving average) followed by ReLU, optionally with a residual added
// before the ReLU, in two passes over the activations forward (statistics; normalise, add and
// clamp) and two backward (the gradient's two sums; the input's gradient), where libtorch's
// composition makes four forward (statistics, normalise, add, ReLU) and three backward (ReLU's
// mask, BatchNorm's two), each writing a tensor of its own. Activations are channels-last,
// float32 or bfloat16; the statistics, gamma, beta and every sum are float32 or float64. The
// backward reads the ReLU's mask as one bit per value (1/32 of a float32 output's bytes) rather
// than the output, so the op keeps the input, the bits and the statistics: the output is the
// next convolution's to keep.

// The loops' instruction sets, as `instruction_set` names them: 0 the best this CPU has, 1
// AVX-512, 2 AVX2 with FMA, 3 the x86-64 baseline. Any but the best is for the tests, which run
// every copy the CPU can.
const resnext_bn::Kernels& bn_kernels(int64_t instruction_set) {
#if defined(__x86_64__)
  // What the CPU has, asked once (thread-safe static initialisation).
  static const bool avx512 = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f")) &&
                             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                             __builtin_cpu_supports("avx512dq");
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (instruction_set) {
    case 0:
      return avx512 ? resnext_bn::kernels_avx512 : avx2 ? resnext_bn::kernels_avx2 : resnext_bn::kernels_baseline;
    case 1:
      TORCH_CHECK(avx512, "fused BatchNorm-ReLU: this CPU has no AVX-512");
      return resnext_bn::kernels_avx512;
    case 2:
      TORCH_CHECK(avx2, "fused BatchNorm-ReLU: this CPU has no AVX2 with FMA");
      return resnext_bn::kernels_avx2;
  }
#endif
  // The baseline copy: asked for by name, or the only one (aarch64, where build.rs compiles no other).
  TORCH_CHECK(instruction_set == 0 || instruction_set == 3, "fused BatchNorm-ReLU: no instruction set ",
              instruction_set, " in this build");
  return resnext_bn::kernels_baseline;
}

// Per-channel float64 sums of a [rows, channels] tensor, by `sums` (a kernel summing one block
// of at most kStatsRows rows into two arrays). Blocks are summed in parallel and added up in
// block order, so the result does not depend on the number of threads.
template <typename F>
std::pair<std::vector<double>, std::vector<double>> channel_sums(int64_t rows, int64_t channels, F sums) {
  const int64_t blocks = (rows + resnext_bn::kStatsRows - 1) / resnext_bn::kStatsRows;
  std::vector<double> partial(static_cast<size_t>(blocks * 2 * channels));
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t first = block * resnext_bn::kStatsRows;
      const int64_t count = std::min(resnext_bn::kStatsRows, rows - first);
      double* out = partial.data() + block * 2 * channels;
      sums(first, count, out, out + channels);
    }
  });
  std::vector<double> first(channels, 0.0), second(channels, 0.0);
  for (int64_t block = 0; block < blocks; ++block) {
    const double* in = partial.data() + block * 2 * channels;
    for (int64_t c = 0; c < channels; ++c) {
      first[c] += in[c];
      second[c] += in[channels + c];
    }
  }
  return {std::move(first), std::move(second)};
}

// Runs `f(first_row, row_count)` over row blocks in parallel.
template <typename F>
void over_rows(int64_t rows, int64_t channels, F f) {
  // About 64 KiB of activations per task: small enough to share out, big enough to pay.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(channels, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { f(begin, end - begin); });
}

const char* row_pointer(const at::Tensor& t, int64_t row, int64_t channels) {
  return static_cast<const char*>(t.const_data_ptr()) + row * channels * t.element_size();
}

char* row_pointer(at::Tensor& t, int64_t row, int64_t channels) {
  return static_cast<char*>(t.mutable_data_ptr()) + row * channels * t.element_size();
}

std::vector<float> floats(const at::Tensor& t) {
  auto f = t.detach().to(at::kFloat).contiguous();
  return std::vector<float>(f.const_data_ptr<float>(), f.const_data_ptr<float>() + f.numel());
}

at::Tensor float_tensor(const std::vector<float>& values) {
  return at::tensor(at::ArrayRef<float>(values), at::TensorOptions().dtype(at::kFloat));
}

struct BatchNormReLU : public torch::autograd::Function<BatchNormReLU> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& gamma,
                            const at::Tensor& beta, const std::optional<at::Tensor>& skip,
                            const at::Tensor& running_mean, const at::Tensor& running_var, double momentum, double eps,
                            int64_t instruction_set) {
    RECORD_USER_SCOPE("resnext::batch_norm_relu");
    TORCH_CHECK(input.device().is_cpu(), "fused BatchNorm-ReLU runs on the CPU only, got ", input.device());
    TORCH_CHECK(input.dim() == 4, "fused BatchNorm-ReLU takes 4-D activations, got ", input.dim(), "-D");
    TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kBFloat16,
                "fused BatchNorm-ReLU takes float32 or bfloat16 activations, got ", input.scalar_type());
    const int64_t channels = input.size(1);
    const int64_t rows = input.numel() / std::max<int64_t>(channels, 1);
    TORCH_CHECK(rows > 1, "fused BatchNorm-ReLU needs more than one value per channel, got ", input.sizes());
    for (const at::Tensor* t : {&gamma, &beta, &running_mean, &running_var})
      TORCH_CHECK(t->numel() == channels && t->scalar_type() == at::kFloat && t->is_contiguous(),
                  "fused BatchNorm-ReLU: gamma, beta and the moving statistics are contiguous float32 of ", channels,
                  " values, got ", t->sizes(), " ", t->scalar_type());
    const auto format = at::MemoryFormat::ChannelsLast;
    const at::Tensor x = input.contiguous(format);
    at::Tensor residual;
    if (skip.has_value() && skip->defined()) {
      TORCH_CHECK(skip->sizes() == input.sizes(), "fused BatchNorm-ReLU: the shortcut's shape ", skip->sizes(),
                  " differs from the input's ", input.sizes());
      residual = skip->to(input.scalar_type()).contiguous(format);
    }
    const bool bf16 = x.scalar_type() == at::kBFloat16;
    const auto& kernels = bn_kernels(instruction_set);

    // Statistics, summed around the first row's values so that float32 block sums do not cancel.
    std::vector<float> shift(channels);
    {
      auto first = x.select(0, 0).select(1, 0).select(1, 0).to(at::kFloat).contiguous();
      std::copy(first.const_data_ptr<float>(), first.const_data_ptr<float>() + channels, shift.begin());
    }
    auto [sum, sum_squares] = channel_sums(rows, channels, [&](int64_t first, int64_t count, double* s, double* q) {
      kernels.stats(bf16, row_pointer(x, first, channels), count, channels, shift.data(), s, q);
    });
    const auto g = floats(gamma), b = floats(beta);
    std::vector<float> mean(channels), invstd(channels), scale(channels), bias(channels);
    float* moving_mean = running_mean.mutable_data_ptr<float>();
    float* moving_var = running_var.mutable_data_ptr<float>();
    for (int64_t c = 0; c < channels; ++c) {
      const double centered = sum[c] / rows;
      const double variance = std::max(sum_squares[c] / rows - centered * centered, 0.0);
      const double mu = shift[c] + centered;
      mean[c] = static_cast<float>(mu);
      invstd[c] = static_cast<float>(1.0 / std::sqrt(variance + eps));
      scale[c] = g[c] * invstd[c];
      bias[c] = b[c] - mean[c] * scale[c];
      // Keras: moving = moving * momentum + batch * (1 - momentum), with the unbiased variance.
      moving_mean[c] = static_cast<float>(moving_mean[c] * momentum + mu * (1.0 - momentum));
      moving_var[c] = static_cast<float>(moving_var[c] * momentum + variance * rows / (rows - 1) * (1.0 - momentum));
    }

    at::Tensor output = at::empty_like(x, format);
    at::Tensor mask = at::empty({rows, (channels + 7) / 8}, x.options().dtype(at::kByte));
    over_rows(rows, channels, [&](int64_t first, int64_t count) {
      kernels.forward(bf16, row_pointer(x, first, channels),
                      residual.defined() ? row_pointer(residual, first, channels) : nullptr,
                      row_pointer(output, first, channels), mask.mutable_data_ptr<uint8_t>() + first * mask.size(1),
                      count, channels, scale.data(), bias.data());
    });
    ctx->save_for_backward({x, mask, gamma, float_tensor(mean), float_tensor(invstd)});
    ctx->saved_data["skip"] = residual.defined();
    ctx->saved_data["instruction_set"] = instruction_set;
    return output;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    RECORD_USER_SCOPE("resnext::batch_norm_relu_backward");
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0];
    const uint8_t* mask = saved[1].const_data_ptr<uint8_t>();
    const int64_t mask_row = saved[1].size(1);
    const auto gamma = floats(saved[2]), mean = floats(saved[3]), invstd = floats(saved[4]);
    const bool has_skip = ctx->saved_data["skip"].toBool();
    const auto format = at::MemoryFormat::ChannelsLast;
    // The gradient arrives in whatever layout the next op made (a broadcast from the pooling's
    // backward, say): the loops want it as the activations are.
    const at::Tensor dy = grad_outputs[0].to(x.scalar_type()).contiguous(format);
    const int64_t channels = x.size(1);
    const int64_t rows = x.numel() / channels;
    const bool bf16 = x.scalar_type() == at::kBFloat16;
    const auto& kernels = bn_kernels(ctx->saved_data["instruction_set"].toInt());

    auto [sum_g, sum_g_centered] =
        channel_sums(rows, channels, [&](int64_t first, int64_t count, double* s, double* q) {
          kernels.backward_stats(bf16, row_pointer(dy, first, channels), mask + first * mask_row,
                                 row_pointer(x, first, channels), count, channels, mean.data(), s, q);
        });
    // With g the gradient after the ReLU and xhat = (x - mean) * invstd:
    // dbeta = sum g, dgamma = sum g xhat, and
    // dx = gamma invstd (g - dbeta / rows - xhat dgamma / rows) = a g + b (x - mean) + k.
    std::vector<float> dgamma(channels), dbeta(channels), a(channels), b(channels), k(channels);
    for (int64_t c = 0; c < channels; ++c) {
      dbeta[c] = static_cast<float>(sum_g[c]);
      dgamma[c] = static_cast<float>(sum_g_centered[c] * invstd[c]);
      const double scale = static_cast<double>(gamma[c]) * invstd[c];
      a[c] = static_cast<float>(scale);
      b[c] = static_cast<float>(-scale * invstd[c] * invstd[c] * sum_g_centered[c] / rows);
      k[c] = static_cast<float>(-scale * sum_g[c] / rows);
    }
    at::Tensor dx = at::empty_like(x, format);
    at::Tensor dskip = has_skip ? at::empty_like(x, format) : at::Tensor();
    over_rows(rows, channels, [&](int64_t first, int64_t count) {
      kernels.backward(bf16, row_pointer(dy, first, channels), mask + first * mask_row,
                       row_pointer(x, first, channels), row_pointer(dx, first, channels),
                       has_skip ? row_pointer(dskip, first, channels) : nullptr, count, channels, a.data(), b.data(),
                       mean.data(), k.data());
    });
    return {dx, float_tensor(dgamma), float_tensor(dbeta), dskip, at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

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

// relu(batch_norm(input) [+ skip]) in training, updating the moving statistics in place; `skip`
// may be null; `instruction_set` as bn_kernels takes it. The result is an autograd node: its
// backward gives input, gamma, beta and skip their gradients.
char* ext_batch_norm_relu(at::Tensor* input, at::Tensor* gamma, at::Tensor* beta, at::Tensor* skip,
                          at::Tensor* running_mean, at::Tensor* running_var, double momentum, double eps,
                          int64_t instruction_set, at::Tensor** out) {
  return protect([&] {
    std::optional<at::Tensor> shortcut;
    if (skip) shortcut = *skip;
    *out = new at::Tensor(
        BatchNormReLU::apply(*input, *gamma, *beta, shortcut, *running_mean, *running_var, momentum, eps,
                             instruction_set));
  });
}

char* ext_op_recorder_start() {
  return protect([&] {
    if (recorder != 0) throw std::runtime_error("the op recorder is already running");
    records.clear();
    recorder = at::addThreadLocalCallback(
        at::RecordFunctionCallback(op_start, op_end).needsInputs(false).needsOutputs(false).needsIds(false).scopes(
            {at::RecordScope::FUNCTION, at::RecordScope::USER_SCOPE}));
  });
}

// The records as lines of "name<TAB>calls<TAB>outermost calls<TAB>self nanoseconds", in a
// string the caller frees with ext_free_error.
char* ext_op_recorder_stop(char** table) {
  return protect([&] {
    if (recorder == 0) throw std::runtime_error("the op recorder is not running");
    at::removeCallback(recorder);
    recorder = 0;
    std::string text;
    std::lock_guard<std::mutex> lock(records_mutex);
    for (const auto& [name, record] : records)
      text += name + "\t" + std::to_string(record.calls) + "\t" + std::to_string(record.outermost) + "\t" +
              std::to_string(record.self_ns) + "\n";
    *table = malloc_copy(text.c_str());
  });
}

}  // extern "C"
