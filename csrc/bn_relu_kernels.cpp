// The loops of the fused BatchNorm -> (+ shortcut) -> ReLU op (see bn_relu_kernels.h), written
// as plain loops over channels that the compiler vectorises for the instruction set this copy is
// built for (build.rs: -DKERNELS=avx512, avx2 or baseline names this copy, its flags pick the
// instructions; intrinsics only pack and unpack the ReLU's mask bits). Nothing here may come
// from a header that other copies also compile (no std containers or algorithms): an inline
// function the linker kept from the AVX-512 copy would crash a CPU without it.
#include "bn_relu_kernels.h"

#include <cstring>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#ifndef KERNELS
#error "build.rs defines KERNELS, the name of this copy's table"
#endif

namespace resnext_bn {
namespace KERNELS {
namespace {

// The channels a loop handles at a time (its float32 rows and sums are on the stack); wider
// layers take several tiles. A multiple of 16, so that a tile's mask bits start on a byte.
constexpr int64_t kChannelTile = 512;

inline float load(const float* p, int64_t i) { return p[i]; }

// bfloat16 is the upper half of a float32.
inline float load(const uint16_t* p, int64_t i) {
  uint32_t bits = uint32_t(p[i]) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

inline void store(float* p, int64_t i, float value) { p[i] = value; }

// Rounds to the nearest bfloat16, ties to even, as c10::BFloat16 does; NaN stays NaN.
inline void store(uint16_t* p, int64_t i, float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  uint16_t rounded = uint16_t((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
  p[i] = value != value ? uint16_t(0x7FC0) : rounded;
}

// ReLU that keeps NaN, like torch.relu.
inline float relu(float v) { return v < 0.f ? 0.f : v; }

// ReLU's mask, one bit per value: set where the output is not <= 0 (NaN included), where
// torch's threshold_backward passes the gradient on. Bit c of a row is bit c % 8 of its byte c / 8.
inline void pack_bits_scalar(const float* v, int64_t from, int64_t n, uint8_t* bits) {
  for (int64_t c = from; c < n; ++c) {
    if (c % 8 == 0) bits[c / 8] = 0;
    bits[c / 8] |= uint8_t(!(v[c] <= 0.f)) << (c % 8);
  }
}

inline void unpack_bits_scalar(const uint8_t* bits, int64_t from, int64_t n, float* keep) {
  for (int64_t c = from; c < n; ++c) keep[c] = (bits[c / 8] >> (c % 8)) & 1 ? 1.f : 0.f;
}

inline void pack_bits(const float* v, int64_t n, uint8_t* bits) {
  int64_t c = 0;
#if defined(__AVX512F__)
  for (; c + 16 <= n; c += 16) {
    __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(v + c), _mm512_setzero_ps(), _CMP_NLE_UQ);
    std::memcpy(bits + c / 8, &m, sizeof m);
  }
#elif defined(__AVX2__)
  for (; c + 8 <= n; c += 8)
    bits[c / 8] = uint8_t(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(v + c), _mm256_setzero_ps(), _CMP_NLE_UQ)));
#endif
  pack_bits_scalar(v, c, n, bits);
}

// keep[c] = 1 where bit c is set, else 0.
inline void unpack_bits(const uint8_t* bits, int64_t n, float* keep) {
  int64_t c = 0;
#if defined(__AVX512F__)
  for (; c + 16 <= n; c += 16) {
    __mmask16 m;
    std::memcpy(&m, bits + c / 8, sizeof m);
    _mm512_storeu_ps(keep + c, _mm512_maskz_mov_ps(m, _mm512_set1_ps(1.f)));
  }
#elif defined(__AVX2__)
  const __m256i select = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  for (; c + 8 <= n; c += 8) {
    __m256i on = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits[c / 8]), select), select);
    _mm256_storeu_ps(keep + c, _mm256_and_ps(_mm256_castsi256_ps(on), _mm256_set1_ps(1.f)));
  }
#endif
  unpack_bits_scalar(bits, c, n, keep);
}

inline int64_t tile_width(int64_t channels, int64_t c0) {
  return channels - c0 < kChannelTile ? channels - c0 : kChannelTile;
}

template <typename T>
void stats(const T* __restrict x, int64_t rows, int64_t channels, const float* __restrict shift,
           double* __restrict sum, double* __restrict sum_squares) {
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelTile) {
    const int64_t width = tile_width(channels, c0);
    float s[kChannelTile] = {}, q[kChannelTile] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const T* __restrict row = x + r * channels + c0;
      for (int64_t c = 0; c < width; ++c) {
        float d = load(row, c) - shift[c0 + c];
        s[c] += d;
        q[c] += d * d;
      }
    }
    for (int64_t c = 0; c < width; ++c) {
      sum[c0 + c] = s[c];
      sum_squares[c0 + c] = q[c];
    }
  }
}

template <typename T>
void forward(const T* __restrict x, const T* __restrict skip, T* __restrict y, uint8_t* __restrict mask, int64_t rows,
             int64_t channels, const float* __restrict scale, const float* __restrict bias) {
  const int64_t mask_row = (channels + 7) / 8;
  float v[kChannelTile];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < channels; c0 += kChannelTile) {
      const int64_t width = tile_width(channels, c0), at = r * channels + c0;
      const T* __restrict in = x + at;
      const float* __restrict s = scale + c0;
      const float* __restrict b = bias + c0;
      if (skip) {
        const T* __restrict add = skip + at;
        for (int64_t c = 0; c < width; ++c) v[c] = relu(load(in, c) * s[c] + b[c] + load(add, c));
      } else {
        for (int64_t c = 0; c < width; ++c) v[c] = relu(load(in, c) * s[c] + b[c]);
      }
      T* __restrict out = y + at;
      for (int64_t c = 0; c < width; ++c) store(out, c, v[c]);
      pack_bits(v, width, mask + r * mask_row + c0 / 8);
    }
  }
}

template <typename T>
void backward_stats(const T* __restrict dy, const uint8_t* __restrict mask, const T* __restrict x, int64_t rows,
                    int64_t channels, const float* __restrict mean, double* __restrict sum_g,
                    double* __restrict sum_g_centered) {
  const int64_t mask_row = (channels + 7) / 8;
  float keep[kChannelTile];
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelTile) {
    const int64_t width = tile_width(channels, c0);
    const float* __restrict m = mean + c0;
    float s[kChannelTile] = {}, q[kChannelTile] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t at = r * channels + c0;
      unpack_bits(mask + r * mask_row + c0 / 8, width, keep);
      for (int64_t c = 0; c < width; ++c) {
        float g = keep[c] != 0.f ? load(dy + at, c) : 0.f;
        s[c] += g;
        q[c] += g * (load(x + at, c) - m[c]);
      }
    }
    for (int64_t c = 0; c < width; ++c) {
      sum_g[c0 + c] = s[c];
      sum_g_centered[c0 + c] = q[c];
    }
  }
}

template <typename T>
void backward(const T* __restrict dy, const uint8_t* __restrict mask, const T* __restrict x, T* __restrict dx,
              T* __restrict dskip, int64_t rows, int64_t channels, const float* __restrict a,
              const float* __restrict b, const float* __restrict mean, const float* __restrict k) {
  const int64_t mask_row = (channels + 7) / 8;
  float keep[kChannelTile];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < channels; c0 += kChannelTile) {
      const int64_t width = tile_width(channels, c0), at = r * channels + c0;
      unpack_bits(mask + r * mask_row + c0 / 8, width, keep);
      const float *__restrict ta = a + c0, *__restrict tb = b + c0, *__restrict tm = mean + c0, *__restrict tk = k + c0;
      if (dskip) {
        for (int64_t c = 0; c < width; ++c) {
          float g = keep[c] != 0.f ? load(dy + at, c) : 0.f;
          store(dx + at, c, ta[c] * g + tb[c] * (load(x + at, c) - tm[c]) + tk[c]);
          store(dskip + at, c, g);
        }
      } else {
        for (int64_t c = 0; c < width; ++c) {
          float g = keep[c] != 0.f ? load(dy + at, c) : 0.f;
          store(dx + at, c, ta[c] * g + tb[c] * (load(x + at, c) - tm[c]) + tk[c]);
        }
      }
    }
  }
}

// The table's entries: the dtype is chosen once per call, outside the loops.
using bf16 = uint16_t;

void stats_any(bool is_bf16, const void* x, int64_t rows, int64_t channels, const float* shift, double* sum,
               double* sum_squares) {
  if (is_bf16)
    stats(static_cast<const bf16*>(x), rows, channels, shift, sum, sum_squares);
  else
    stats(static_cast<const float*>(x), rows, channels, shift, sum, sum_squares);
}

void forward_any(bool is_bf16, const void* x, const void* skip, void* y, uint8_t* mask, int64_t rows,
                 int64_t channels, const float* scale, const float* bias) {
  if (is_bf16)
    forward(static_cast<const bf16*>(x), static_cast<const bf16*>(skip), static_cast<bf16*>(y), mask, rows, channels,
            scale, bias);
  else
    forward(static_cast<const float*>(x), static_cast<const float*>(skip), static_cast<float*>(y), mask, rows,
            channels, scale, bias);
}

void backward_stats_any(bool is_bf16, const void* dy, const uint8_t* mask, const void* x, int64_t rows,
                        int64_t channels, const float* mean, double* sum_g, double* sum_g_centered) {
  if (is_bf16)
    backward_stats(static_cast<const bf16*>(dy), mask, static_cast<const bf16*>(x), rows, channels, mean, sum_g,
                   sum_g_centered);
  else
    backward_stats(static_cast<const float*>(dy), mask, static_cast<const float*>(x), rows, channels, mean, sum_g,
                   sum_g_centered);
}

void backward_any(bool is_bf16, const void* dy, const uint8_t* mask, const void* x, void* dx, void* dskip,
                  int64_t rows, int64_t channels, const float* a, const float* b, const float* mean, const float* k) {
  if (is_bf16)
    backward(static_cast<const bf16*>(dy), mask, static_cast<const bf16*>(x), static_cast<bf16*>(dx),
             static_cast<bf16*>(dskip), rows, channels, a, b, mean, k);
  else
    backward(static_cast<const float*>(dy), mask, static_cast<const float*>(x), static_cast<float*>(dx),
             static_cast<float*>(dskip), rows, channels, a, b, mean, k);
}

}  // namespace
}  // namespace KERNELS

#define RESNEXT_CONCAT_(a, b) a##b
#define RESNEXT_CONCAT(a, b) RESNEXT_CONCAT_(a, b)
// Declared extern in the header: kernels_avx512, kernels_avx2 or kernels_baseline.
const Kernels RESNEXT_CONCAT(kernels_, KERNELS) = {KERNELS::stats_any, KERNELS::forward_any,
                                                   KERNELS::backward_stats_any, KERNELS::backward_any};

}  // namespace resnext_bn
