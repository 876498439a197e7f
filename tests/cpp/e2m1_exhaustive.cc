// Checks the E2M1 encoder of ffi/common/formats.h against SPEC 2.1's threshold table on
// every float32 bit pattern (or every `stride`-th one). Prints the first mismatches and the
// count; exit status 0 when there are none. Run by tests/test_encoders_exhaustive.py.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/formats.h"

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

}  // namespace

int main(int argc, char** argv) {
  const uint64_t stride = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1;
  uint64_t mismatches = 0, checked = 0;
  uint32_t packed_in[8];
  for (uint64_t i = 0; i < (uint64_t{1} << 32); i += stride) {
    const uint32_t bits = static_cast<uint32_t>(i);
    const uint32_t want = SpecE2M1(bits);
    const uint32_t got = jax_fp4::EncodeE2M1(jax_fp4::BitsFloat(bits));
    ++checked;
    bool ok = got == want;
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
  std::printf("checked %llu, mismatches %llu\n", static_cast<unsigned long long>(checked),
              static_cast<unsigned long long>(mismatches));
  return mismatches == 0 ? 0 : 1;
}
