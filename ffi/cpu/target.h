// Whether the CPU handlers carry AVX2 versions of their loops (x86-64 with GCC or Clang).
// Set from outside (-DJAX_FP4_CPU_AVX2=0) to compile the code of other targets on x86-64:
// tests/test_cpu_portable.py does, so that code stays buildable.
#pragma once

#if !defined(JAX_FP4_CPU_AVX2)
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define JAX_FP4_CPU_AVX2 1
#else
#define JAX_FP4_CPU_AVX2 0
#endif
#endif
