// The loops of the fused BatchNorm -> (+ shortcut) -> ReLU training op (csrc/fused.cpp holds the
// op itself: its autograd function, threads and statistics). Activations are channels-last, so a
// tensor is `rows` (N*H*W) rows of `channels` values, and every loop runs over a block of rows
// with the channel as the innermost, vectorised index. `bf16` says whether activations are
// bfloat16 (else float32); every sum and parameter is float32 (a block's sums) or float64 (their
// total, in fused.cpp).
//
// bn_relu_kernels.cpp is compiled once per instruction set (AVX-512, AVX2, baseline x86-64; the
// baseline only on other architectures) and fused.cpp picks the table the CPU supports at run time,
// as PyTorch's own kernels do.
#pragma once
#include <cstdint>

namespace resnext_bn {

struct Kernels {
  // Per channel over a block of rows: sum of (x - shift) and of its square.
  void (*stats)(bool bf16, const void* x, int64_t rows, int64_t channels, const float* shift, double* sum,
                double* sum_squares);
  // y = relu(x * scale + bias [+ skip]), and ReLU's mask: one bit per value, set where y is not
  // <= 0, rows of (channels + 7) / 8 bytes.
  void (*forward)(bool bf16, const void* x, const void* skip, void* y, uint8_t* mask, int64_t rows, int64_t channels,
                  const float* scale, const float* bias);
  // With g = dy where the mask is set, else 0, per channel over a block of rows: sum of g and of
  // g * (x - mean).
  void (*backward_stats)(bool bf16, const void* dy, const uint8_t* mask, const void* x, int64_t rows, int64_t channels,
                         const float* mean, double* sum_g, double* sum_g_centered);
  // dx = a * g + b * (x - mean) + k, and dskip = g when dskip is not null.
  void (*backward)(bool bf16, const void* dy, const uint8_t* mask, const void* x, void* dx, void* dskip, int64_t rows,
                   int64_t channels, const float* a, const float* b, const float* mean, const float* k);
};

// The most rows one call of `stats` or `backward_stats` sums in float32 before handing the sums
// over in float64: few enough that float32 loses nothing that matters (128 terms).
constexpr int64_t kStatsRows = 128;

#if defined(__x86_64__)
extern const Kernels kernels_avx512;
extern const Kernels kernels_avx2;
#endif
extern const Kernels kernels_baseline;

}  // namespace resnext_bn
