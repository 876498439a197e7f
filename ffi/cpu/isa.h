// Runs a CPU kernel body compiled for the baseline x86-64 ISA or, where the CPU has it, for
// AVX2 (with F16C, which every AVX2 CPU has: float16 <-> float32 in one instruction): the
// handlers' inner loops vectorize twice as wide with it (and with real blends and unsigned
// min/max), and the library itself still runs on any x86-64. Other targets run
// the body as it is. Both versions compute the same bits: the same IEEE float32 operations,
// no FMA (-ffp-contract=off; "avx2" does not enable FMA either).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "common/ffi_utils.h"
#include "cpu/target.h"

namespace jax_fp4::cpu {

// Whether bodies run their AVX2 version: the CPU has AVX2 and F16C and JAX_FP4_CPU_BASELINE
// is unset or "0" (set it to test the baseline version on an AVX2 machine). Read once.
inline bool UseAvx2() {
#if JAX_FP4_CPU_AVX2
  static const bool use = [] {
    const char* env = std::getenv("JAX_FP4_CPU_BASELINE");
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") &&
           (env == nullptr || env[0] == '\0' || env[0] == '0');
  }();
  return use;
#else
  return false;
#endif
}

// `flatten` inlines everything the body calls, so all of it is compiled for the target.
template <typename Body>
__attribute__((flatten)) void RunBaseline(const Body& body, int64_t begin, int64_t end) {
  body(begin, end);
}

#if JAX_FP4_CPU_AVX2
template <typename Body>
__attribute__((target("avx2,f16c"), flatten)) void RunAvx2(const Body& body, int64_t begin,
                                                       int64_t end) {
  body(begin, end);
}
#endif

// body(begin, end) with the best version for this CPU.
template <typename Body>
void RunBestIsa(const Body& body, int64_t begin, int64_t end) {
#if JAX_FP4_CPU_AVX2
  if (UseAvx2()) return RunAvx2(body, begin, end);
#endif
  RunBaseline(body, begin, end);
}

// Rows [0, n) over the thread pool (`grain` rows at least per task). `rows(kind, begin, end)`
// is a generic lambda: with std::true_type it may use hand-written AVX2 code, instantiated
// only where kHasAvx2Path; that version runs where `avx2_path` holds and the CPU has AVX2,
// and rows(std::false_type, ...) runs with the best version for this CPU otherwise.
template <bool kHasAvx2Path, typename Rows>
void ParallelRows(int64_t n, int64_t grain, bool avx2_path, const Rows& rows) {
#if JAX_FP4_CPU_AVX2
  if constexpr (kHasAvx2Path) {
    if (avx2_path && UseAvx2()) {
      ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
        RunAvx2([&](int64_t b, int64_t e) { rows(std::true_type{}, b, e); }, begin, end);
      });
      return;
    }
  }
#endif
  ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
    RunBestIsa([&](int64_t b, int64_t e) { rows(std::false_type{}, b, e); }, begin, end);
  });
}

}  // namespace jax_fp4::cpu
