#pragma once

// FL_AVX2_CLONE: an AVX2 copy of a row loop, chosen at load time on CPUs that have it (as torch's own
// kernels are); the build itself targets the baseline x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FL_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define FL_AVX2_CLONE
#endif
