#pragma once
// Portability macro for the per-element math that the CPU and CUDA kernels share.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define FL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FL_HOST_DEVICE inline
#endif
