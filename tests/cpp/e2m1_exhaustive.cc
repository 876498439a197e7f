// Checks the E2M1 encoder of ffi/common/formats.h against SPEC 2.1's threshold table on
// every float32 bit pattern (or every `stride`-th one), and the CPU quantizers' AVX2 encoder
// (ffi/cpu/simd_formats.h) where the CPU has AVX2. Prints the first mismatches and the
// count; exit status 0 when there are none. Run by tests/test_encoders_exhaustive.py.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/formats.h"
#include "cpu/simd_formats.h"

namespace {

// SPEC 2.1, written out: NaN -> 7, else the sign bit of y plus the magnitude code.
uint32_t SpecE2M1(uint32_t bits) {
  const uint32_t mag_bits = bits & 0x7FFFFFFFu;
  if (mag_bits > 0x7F800000u) return 7;
  float a;
  std::memcpy(&a, &mag_bits, sizeof(a));
  uint32_t code;
  if (a <= 0.25f) code = 0;
  else if (a < 0.75f) code = 1;
  else if (a <= 1.25f) code = 2;
  else if (a < 1.75f) code = 3;
  else if (a <= 2.5f) code = 4;
  else if (a < 3.5f) code = 5;
  else if (a <= 5.0f) code = 6;
  else code = 7;
  return code | ((bits >> 28) & 8u);
}

// The CPU quantizers' AVX2 encoder on 8 patterns: E2M1CodesAvx2(x, 1) must be the code of x
// (x * 1 is x, NaN included). Returns how many of the 8 lanes differ from `want`.
#if JAX_FP4_CPU_AVX2
__attribute__((target("avx2"))) int Avx2Mismatches(const float (&in)[8],
                                                   const uint32_t (&want)[8]) {
  uint32_t got[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(got),
                      jax_fp4::cpu::E2M1CodesAvx2(_mm256_loadu_ps(in), _mm256_set1_ps(1.0f)));
  int bad = 0;
  for (int k = 0; k < 8; ++k) {
    if (got[k] != want[k] && bad++ == 0)
      std::printf("AVX2 0x%08x: want %u got %u\n", jax_fp4::FloatBits(in[k]), want[k], got[k]);
  }
  return bad;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const uint64_t stride = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1;
  uint64_t mismatches = 0, checked = 0;
  uint32_t packed_in[8];
#if JAX_FP4_CPU_AVX2
  const bool avx2 = __builtin_cpu_supports("avx2");
  float lanes_in[8];
  uint32_t lanes_want[8];
  int lanes = 0;
  uint64_t avx2_checked = 0;
#endif
  for (uint64_t i = 0; i < (uint64_t{1} << 32); i += stride) {
    const uint32_t bits = static_cast<uint32_t>(i);
    const uint32_t want = SpecE2M1(bits);
    const uint32_t got = jax_fp4::EncodeE2M1(jax_fp4::BitsFloat(bits));
    ++checked;
    bool ok = got == want;
#if JAX_FP4_CPU_AVX2
    if (avx2) {  // every pattern, 8 at a time
      lanes_in[lanes] = jax_fp4::BitsFloat(bits);
      lanes_want[lanes] = want;
      if (++lanes == 8) {
        mismatches += Avx2Mismatches(lanes_in, lanes_want);
        avx2_checked += 8;
        lanes = 0;
      }
    }
#endif
    // The packed form on every 61st pattern (it is 10x slower here), in a rotating nibble.
    uint32_t word = 0, want_word = 0;
    if ((i / stride) % 61 == 0) {
      const int slot = static_cast<int>((i / stride / 61) & 7);
      for (int k = 0; k < 8; ++k) packed_in[k] = k == slot ? bits : 0x3F800000u;  // others 1.0
      float y[8];
      std::memcpy(y, packed_in, sizeof(y));
      word = jax_fp4::EncodeE2M1x8(y);
      want_word = (0x22222222u & ~(0xFu << (4 * slot))) | (want << (4 * slot));
      ok = ok && word == want_word;
    }
    if (!ok) {
      if (mismatches < 10)
        std::printf("0x%08x: want %u got %u (packed 0x%08x, want 0x%08x)\n", bits, want, got,
                    word, want_word);
      ++mismatches;
    }
  }
#if JAX_FP4_CPU_AVX2
  std::printf("AVX2 encoder checked on %llu patterns\n",
              static_cast<unsigned long long>(avx2_checked));
#endif
  std::printf("checked %llu, mismatches %llu\n", static_cast<unsigned long long>(checked),
              static_cast<unsigned long long>(mismatches));
  return mismatches == 0 ? 0 : 1;
}
