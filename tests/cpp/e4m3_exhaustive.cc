// Checks the E4M3 encoder of ffi/common/formats.h (a float add does the rounding) against
// the plain integer encoder it replaced, kept here as the reference, on every float32 bit
// pattern (or every `stride`-th one), split over the machine's threads; and that the host
// MXFP8 element encoder, which leaves out the clamp to +-448 (the encoder saturates), equals
// encode(clamp(y)) on every y; and the CPU MXFP8 quantizer's AVX2 encoder and the CPU
// dequantizers' AVX2 E4M3 decoder, where the CPU has AVX2. Prints the first mismatches and the count; exit status 0 when there are none. Run by
// tests/test_encoders_exhaustive.py.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "common/block_scale.h"
#include "common/formats.h"
#include "cpu/simd_formats.h"

namespace {

// SPEC 2.2 written out: round to nearest even on the E4M3 grid, saturate to +-448, NaN -> 0x7F.
uint32_t ReferenceE4M3(uint32_t u) {
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t mag = u & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return 0x7Fu;
  if (mag >= 0x43E00000u) return sign | 0x7Eu;  // >= 448, inf included
  const uint32_t exp = mag >> 23;
  if (exp >= 121) {  // normal E4M3: round the 23-bit mantissa to 3 bits
    const uint32_t rounded = (mag + 0x7FFFFu + ((mag >> 20) & 1u)) >> 20;
    return sign | (rounded - (120u << 3));
  }
  if (exp == 0) return sign;  // zero or float32 subnormal
  // Subnormal E4M3: multiples of 2^-9.
  const uint32_t significand = (mag & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 141u - exp;
  if (shift >= 26) return sign;
  uint32_t q = significand >> shift;
  const uint32_t rem = significand & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) q += 1;
  return sign | q;
}

// The CPU MXFP8 quantizer's AVX2 encoder on n patterns, 8 at a time: E4m3MagnitudesAvx2(x, 1)
// must be the magnitude of x's code for every x but NaN (which it is not given). Returns the
// number of mismatches; prints the first.
#if JAX_FP4_CPU_AVX2
__attribute__((target("avx2"))) uint64_t Avx2Mismatches(const float* in, const uint32_t* bits,
                                                        int n, std::mutex& print) {
  uint64_t bad = 0;
  for (int i = 0; i + 8 <= n; i += 8) {
    uint32_t got[8];
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(got),
                        jax_fp4::cpu::E4m3MagnitudesAvx2(_mm256_loadu_ps(in + i),
                                                         _mm256_set1_ps(1.0f)));
    for (int k = 0; k < 8; ++k) {
      const uint32_t u = bits[i + k];
      if ((u & 0x7FFFFFFFu) > 0x7F800000u) continue;  // NaN
      const uint32_t want = ReferenceE4M3(u) & 0x7Fu;
      if (got[k] != want && bad++ == 0) {
        std::lock_guard<std::mutex> lock(print);
        std::printf("AVX2 0x%08x: want 0x%02x got 0x%02x\n", u, want, got[k]);
      }
    }
  }
  return bad;
}

// The CPU dequantizers' AVX2 E4M3 decoder on every code: DecodeE4m3x8Avx2(code, 1) must be
// DecodeE4M3(code) (NaN codes: NaN).
__attribute__((target("avx2"))) uint64_t Avx2DecodeMismatches() {
  uint64_t bad = 0;
  for (int first = 0; first < 256; first += 8) {
    uint8_t codes[8];
    for (int k = 0; k < 8; ++k) codes[k] = static_cast<uint8_t>(first + k);
    float got[8];
    _mm256_storeu_ps(got, jax_fp4::cpu::DecodeE4m3x8Avx2(codes, _mm256_set1_ps(1.0f)));
    for (int k = 0; k < 8; ++k) {
      const float want = jax_fp4::DecodeE4M3(first + k);
      const bool same = jax_fp4::IsNan(want)
                            ? jax_fp4::IsNan(got[k])
                            : jax_fp4::FloatBits(got[k]) == jax_fp4::FloatBits(want);
      if (!same && bad++ == 0)
        std::printf("AVX2 decode 0x%02x: want %g got %g\n", first + k, want, got[k]);
    }
  }
  return bad;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const uint64_t stride = argc > 1 ? std::max<uint64_t>(1, std::strtoull(argv[1], nullptr, 10)) : 1;
  const uint64_t total = ((uint64_t{1} << 32) + stride - 1) / stride;  // patterns to check
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<uint64_t> mismatches{0};
  std::mutex print;
  std::vector<std::thread> pool;
#if JAX_FP4_CPU_AVX2
  const bool avx2 = __builtin_cpu_supports("avx2");  // then also the AVX2 encoder, every pattern
#endif
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      constexpr int kChunk = 4096;
      float in[kChunk];
      uint32_t got[kChunk], patterns[kChunk];
      uint64_t local = 0;
      const uint64_t begin = total * t / threads, end = total * (t + 1) / threads;
      for (uint64_t base = begin; base < end; base += kChunk) {
        const int n = static_cast<int>(std::min<uint64_t>(kChunk, end - base));
        for (int i = 0; i < n; ++i) in[i] = jax_fp4::BitsFloat(static_cast<uint32_t>((base + i) * stride));
        for (int i = 0; i < n; ++i) got[i] = jax_fp4::EncodeE4M3(in[i]);
#if JAX_FP4_CPU_AVX2
        if (avx2) {
          for (int i = 0; i < n; ++i) patterns[i] = static_cast<uint32_t>((base + i) * stride);
          local += Avx2Mismatches(in, patterns, n, print);
        }
#endif
        for (int i = 0; i < n; ++i) {
          const uint32_t bits = static_cast<uint32_t>((base + i) * stride);
          const uint32_t want = ReferenceE4M3(bits);
          // The two-byte form pairs each pattern with its neighbour in the chunk.
          const int j = (i ^ 1) < n ? (i ^ 1) : i;
          const uint32_t pair = jax_fp4::EncodeE4M3x2(in[i], in[j]);
          // MXFP8 elements: EncodeOne(y, 1) sees Mul(y, 1) = Ftz(y).
          const float y = jax_fp4::Ftz(in[i]);
          const uint32_t mxfp8 = jax_fp4::BlockQuantizer<jax_fp4::Recipe::kMxfp8, false>::EncodeOne(in[i], 1.0f);
          if (got[i] != want || pair != (want | (got[j] << 8)) ||
              mxfp8 != jax_fp4::EncodeE4M3(jax_fp4::ClampPm448(y))) {
            if (local++ < 10) {
              std::lock_guard<std::mutex> lock(print);
              std::printf("0x%08x: want 0x%02x got 0x%02x (pair 0x%04x, mxfp8 0x%02x)\n", bits,
                          want, got[i], pair, mxfp8);
            }
          }
        }
      }
      mismatches += local;
    });
  }
  for (auto& th : pool) th.join();
#if JAX_FP4_CPU_AVX2
  if (avx2) mismatches += Avx2DecodeMismatches();
#endif
  std::printf("checked %llu, mismatches %llu\n", static_cast<unsigned long long>(total),
              static_cast<unsigned long long>(mismatches.load()));
  return mismatches == 0 ? 0 : 1;
}
