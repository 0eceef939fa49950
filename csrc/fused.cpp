// The fused BatchNorm -> (+ shortcut) -> ReLU training op: see below. Its loops, built once per
// instruction set, are csrc/bn_relu_kernels.cpp; the safe Rust side is `src/torch_ext/fused.rs`;
// the conventions are csrc/torch_ext.h's.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "bn_relu_kernels.h"
#include "torch_ext.h"

using resnext_ext::protect;

namespace {

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

}  // extern "C"
