// CUDA handler of the block dequantizers: same contract and arithmetic as
// ffi/cpu/dequantize.cc (FlashInfer's host IEEE math, so HostMul keeps subnormals).
#include <cuda_runtime.h>

#include <type_traits>

#include "common/block_scale.h"
#include "common/sf_layout.h"
#include "cuda/cuda_utils.h"
#include "handlers.h"

namespace jax_fp4::cuda {
namespace {

// Tiles of the bulk-store kernel when they follow rows: row segments of `tile_groups` groups,
// so that a tile's scale bytes are whole 4-byte words of one row at the swizzled layout's
// column stride, which CopyTileScales copies to shared memory. Tiles are visited in bands of
// `band` rows (the rows whose scales share a 512- or 32-byte chunk), segment by segment; that
// order alone, with a scale load per group, measured no faster than flat tiles (H100).
struct RowTiles {
  bool enabled = false;
  uint32_t segments = 1, band = 1, band_shift = 0;  // band = 2^band_shift rows
  FastDiv32 band_tiles_div;                          // tiles in a full band: band * segments
  uint32_t sf_shift = 4;                             // sf_vec_size = 2^sf_shift (16 or 32)
};

struct DequantizeParams {
  int64_t batch, rows, cols, sf_vec_size, layout, sf_size;
  ElementFormat element_format;
  ScaleFormat scale_format;
  bool plus_zero_code8, device_math;
  SfAddressing sf_addr;
  FastDiv32 groups_per_row_div, rows_div, sf_vec_div;
  RowTiles row_tiles;  // BlockDequantizeBulkKernel's tile order
};

struct Bf16Out { static constexpr bool kBf16 = true; uint16_t bits; };
struct F16Out { static constexpr bool kBf16 = false; uint16_t bits; };

// Output elements per thread and group: 8 (one 16-byte store of 16-bit values, two of
// float32). Four float32 per thread with fully coalesced stores measured slower on an H200
// (MXFP8 to float32: 544 vs 475 us at 16384^2): the per-group index work doubles.
constexpr int kGroup = 8;

template <typename Out>
struct GroupOut {
  static constexpr int kWords = kGroup * sizeof(Out) / 16;  // 16-byte stores: 1 or 2
  uint4 v[kWords];
};

template <typename Out>
__device__ __forceinline__ GroupOut<Out> PackGroup(const float (&o)[kGroup]) {
  GroupOut<Out> g;
  if constexpr (sizeof(Out) == 4) {
    g.v[0] = make_uint4(FloatBits(o[0]), FloatBits(o[1]), FloatBits(o[2]), FloatBits(o[3]));
    g.v[1] = make_uint4(FloatBits(o[4]), FloatBits(o[5]), FloatBits(o[6]), FloatBits(o[7]));
  } else {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t lo = Out::kBf16 ? FloatToBf16(o[2 * i]) : FloatToHalf(o[2 * i]);
      const uint32_t hi = Out::kBf16 ? FloatToBf16(o[2 * i + 1]) : FloatToHalf(o[2 * i + 1]);
      w[i] = lo | (hi << 16);
    }
    g.v[0] = make_uint4(w[0], w[1], w[2], w[3]);
  }
  return g;
}

// What a kernel instantiation decodes: the element format and the per-element flags, fixed
// at compile time so the element loop has no branch and no unused math. The scale format
// stays a runtime value (it is read once per group).
enum class ElementRecipe {
  kE2m1,               // NVFP4 / MXFP4, host math
  kE2m1PlusZeroCode8,  // mxfp4_dequantize_host: code 8 is +0
  kE2m1DeviceMath,     // NVFP4 KV cache (SPEC 5.14): flushing device products
  kE4m3,               // MXFP8, host math
};

// Group g of the output covers elements [g * kGroup, (g + 1) * kGroup) of the flattened
// output; its codes are 2-8 consecutive bytes, and kGroup divides every block size, so one
// scale serves a group: LoadGroup reads its inputs, FinishGroup decodes them.
struct GroupIn {
  uint64_t bits;  // codes: kGroup / 2 bytes (E2M1) or kGroup bytes (E4M3), little-endian
  uint32_t scale_byte;
  float g_scale;
};

// A row's scale bytes (the row part of the layout's offset applied) and its global scale.
struct RowRef {
  const uint8_t* sf;
  const float* global_scale;
};

__device__ __forceinline__ RowRef RowOf(const uint8_t* __restrict__ scales,
                                        const float* __restrict__ global_scale,
                                        const DequantizeParams& p, uint32_t row) {
  const uint32_t b = p.batch == 1 ? 0u : p.rows_div.Div(row);
  const uint32_t r = row - b * static_cast<uint32_t>(p.rows);
  return {scales + b * p.sf_size + p.sf_addr.RowPart(r), global_scale + b};
}

// Group g, whose first element is in column `col` of its row.
template <ElementRecipe kRecipe>
__device__ __forceinline__ GroupIn LoadGroupInRow(const uint8_t* __restrict__ codes,
                                                  const RowRef& row, const DequantizeParams& p,
                                                  uint32_t g, uint32_t col) {
  GroupIn in;
  // (sf_vec_size is any multiple of 8: a 64-bit division here cost ~20 instructions a group)
  in.scale_byte = row.sf[p.sf_addr.ColPart(p.sf_vec_div.Div(col))];
  in.g_scale = *row.global_scale;
  constexpr int kCodeBytes = kRecipe != ElementRecipe::kE4m3 ? kGroup / 2 : kGroup;
  if constexpr (kCodeBytes == 4) in.bits = reinterpret_cast<const uint32_t*>(codes)[g];
  else in.bits = reinterpret_cast<const uint64_t*>(codes)[g];
  return in;
}

template <ElementRecipe kRecipe>
__device__ __forceinline__ GroupIn LoadGroup(const uint8_t* __restrict__ codes,
                                             const uint8_t* __restrict__ scales,
                                             const float* __restrict__ global_scale,
                                             const DequantizeParams& p, uint32_t g,
                                             uint32_t groups_per_row) {
  const uint32_t row = p.groups_per_row_div.Div(g);
  const uint32_t col = (g - row * groups_per_row) * kGroup;
  return LoadGroupInRow<kRecipe>(codes, RowOf(scales, global_scale, p, row), p, g, col);
}

template <typename Out, ElementRecipe kRecipe>
__device__ __forceinline__ GroupOut<Out> FinishGroup(const GroupIn& in, const DequantizeParams& p) {
  constexpr int kN = kGroup;
  // The scale format passes through an opaque move: as a loop invariant it let the compiler
  // copy the whole unrolled trip once per case (~25k instructions, whose cold instruction
  // fetch cost ~7 us a launch at decode sizes).
  uint32_t scale_format = static_cast<uint32_t>(p.scale_format);
  asm volatile("" : "+r"(scale_format));
  const float scale = DecodeScale(static_cast<ScaleFormat>(scale_format), in.scale_byte);
  constexpr bool kFp4 = kRecipe != ElementRecipe::kE4m3;
  constexpr ElementFormat kFormat = kFp4 ? ElementFormat::kE2m1 : ElementFormat::kE4m3;
  constexpr bool kDeviceMath = kRecipe == ElementRecipe::kE2m1DeviceMath;
  // Host math: hmul(e, hmul(s, g)), the inner product the same for the whole group.
  const float host_scale = HostMul(scale, in.g_scale);
  float o[kN], fp4[kN];
  if constexpr (kFp4) DecodeE2M1x8(static_cast<uint32_t>(in.bits), fp4);
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const uint32_t code = static_cast<uint32_t>(kFp4 ? (in.bits >> (4 * i)) & 0xFu
                                                     : (in.bits >> (8 * i)) & 0xFFu);
    float e = kFp4 ? fp4[i] : DecodeElement(kFormat, code, false);
    if constexpr (kRecipe == ElementRecipe::kE2m1PlusZeroCode8)  // DecodeElement's +0, unbranched
      e = BitsFloat(FloatBits(e) & (code == 8u ? kAbsMask : 0xFFFFFFFFu));
    o[i] = kDeviceMath ? DequantizeElement(e, scale, in.g_scale, true) : HostMul(e, host_scale);
  }
  return PackGroup<Out>(o);
}

// Groups a thread takes per trip: kTrip, a block-width apart. Large problems take 4 (loads
// of four groups in flight per thread); problems under a full wave take one group per thread
// (more threads in flight, the shortest serial chain) and a kernel compiled for one: the
// four-slot kernel's dead slots cost ~0.3-0.5 us a launch at decode sizes (H100).
constexpr int kGroupsPerTrip = 4;

// The loops run the same number of trips in every lane of a warp (the float32 stores shuffle
// between lanes); lanes past the end compute nothing and store nothing. All of a trip's
// groups are decoded before any is stored: storing each group as it is decoded measured
// 475 -> 553 us for NVFP4 at 16384^2 (H100).
template <typename Out, ElementRecipe kRecipe, int kTrip>
__global__ void __launch_bounds__(kThreads)
    BlockDequantizeKernel(const uint8_t* __restrict__ codes, const uint8_t* __restrict__ scales,
                          const float* __restrict__ global_scale, GroupOut<Out>* __restrict__ out,
                          DequantizeParams p) {
  const uint32_t groups_per_row = static_cast<uint32_t>(p.cols / kGroup);
  const uint32_t total = static_cast<uint32_t>(p.batch * p.rows * groups_per_row);
  const uint32_t threads = blockDim.x;  // a multiple of 32
  const uint32_t lane = threadIdx.x & 31u;
  const uint32_t cta_span = threads * kTrip;
  for (uint32_t first = blockIdx.x * cta_span + threadIdx.x; first - lane < total;
       first += gridDim.x * cta_span) {
    GroupOut<Out> v[kTrip];
#pragma unroll
    for (int u = 0; u < kTrip; ++u) {
      const uint32_t g = first + u * threads;
      if (g < total)
        v[u] = FinishGroup<Out, kRecipe>(
            LoadGroup<kRecipe>(codes, scales, global_scale, p, g, groups_per_row), p);
    }
#pragma unroll
    for (int u = 0; u < kTrip; ++u) {
      const uint32_t g = first + u * threads;
      if (g - lane >= total) break;  // the same in every lane
      if constexpr (GroupOut<Out>::kWords == 2)
        StorePairSwapped32(reinterpret_cast<uint4*>(out), g, v[u].v[0], v[u].v[1],
                           (g | 1u) < total, g < total);
      else if (g < total)
        out[g] = v[u];
    }
  }
}

// Large problems on sm_90+: the block decodes a tile of blockDim.x * kTrip consecutive groups
// (one contiguous piece of the output) into shared memory and one thread writes it with a
// bulk copy (TMA). BlockDequantizeKernel, storing from registers, was latency-bound at ~83%
// of a copy kernel at 16384^2 (H100). Measured steps (benchmarks/results/
// 2026-11-22_h100_session6.md): bulk stores +2-6%, the next tile's loads issued early +2%,
// FP4 scales through shared memory +4% (NVFP4 ~90% of the copy kernel). The constants are
// the switches of benchmarks/experiments/dequant_variants.sh and dequant_ablation.sh.
constexpr int kBulkStages = 1;
constexpr int kBulkGroupsPerTrip = 2;
constexpr bool kRowTiles = true;
// Scale words of one row tile (4 scale blocks of at least 16 elements each per word).
constexpr int kTileScaleWords = kThreads * kBulkGroupsPerTrip * kGroup / 16 / 4;

// One tile of the bulk kernel: groups [base, base + count) of the flattened output; in row
// tiles, of one row from column `first_col`, whose addressing and global scale are read
// once here.
struct BulkTile {
  uint32_t base = 0, count = 0, first_col = 0;
  RowRef row{};
  float g_scale = 1.0f;
};

__device__ __forceinline__ BulkTile TileAt(uint32_t t, const uint8_t* __restrict__ scales,
                                           const float* __restrict__ global_scale,
                                           const DequantizeParams& p, uint32_t tile_groups,
                                           uint32_t groups_per_row, uint32_t total) {
  const RowTiles& rt = p.row_tiles;
  BulkTile tile;
  if (!rt.enabled) {
    tile.base = t * tile_groups;
    tile.count = min(tile_groups, total - tile.base);
    return tile;
  }
  const uint32_t rows_total = static_cast<uint32_t>(p.batch * p.rows);
  const uint32_t band = rt.band_tiles_div.Div(t);
  const uint32_t in_band = t - band * rt.band * rt.segments;
  const uint32_t first_row = band * rt.band;
  const uint32_t height = min(rt.band, rows_total - first_row);
  // segment-major within the band; only the last band can be shorter than 2^band_shift
  const uint32_t seg = height == rt.band ? in_band >> rt.band_shift : in_band / height;
  const uint32_t row = first_row + (in_band - seg * height);
  tile.base = row * groups_per_row + seg * tile_groups;
  tile.count = min(tile_groups, groups_per_row - seg * tile_groups);
  tile.first_col = seg * tile_groups * kGroup;
  tile.row = RowOf(scales, global_scale, p, row);
  tile.g_scale = *tile.row.global_scale;
  return tile;
}

// Row tiles of FP4 codes take their scale bytes through shared memory (CopyTileScales). The
// E4M3 kernel keeps a byte load per group: with the copy its registers rose from 40 to 54
// (4 blocks per SM) and MXFP8 at 16384^2 went from 490 to 539 us (H100).
template <ElementRecipe kRecipe>
constexpr bool kScalesViaSmem = kRecipe != ElementRecipe::kE4m3;

// The inputs of a tile's groups: everything in flat tiles; in row tiles, all but the scale
// bytes that come through shared memory.
template <ElementRecipe kRecipe, int kTrip>
__device__ __forceinline__ void LoadTile(GroupIn (&in)[kTrip], const BulkTile& tile,
                                         const uint8_t* __restrict__ codes,
                                         const uint8_t* __restrict__ scales,
                                         const float* __restrict__ global_scale,
                                         const DequantizeParams& p, uint32_t groups_per_row) {
  constexpr int kCodeBytes = kRecipe != ElementRecipe::kE4m3 ? kGroup / 2 : kGroup;
#pragma unroll
  for (int u = 0; u < kTrip; ++u) {
    const uint32_t local = u * blockDim.x + threadIdx.x;
    if (local >= tile.count) continue;
    const uint32_t g = tile.base + local;
    if (!p.row_tiles.enabled) {
      in[u] = LoadGroup<kRecipe>(codes, scales, global_scale, p, g, groups_per_row);
      continue;
    }
    if constexpr (!kScalesViaSmem<kRecipe>) {
      in[u] = LoadGroupInRow<kRecipe>(codes, tile.row, p, g, tile.first_col + local * kGroup);
      continue;
    }
    in[u].g_scale = tile.g_scale;
    if constexpr (kCodeBytes == 4) in[u].bits = reinterpret_cast<const uint32_t*>(codes)[g];
    else in[u].bits = reinterpret_cast<const uint64_t*>(codes)[g];
  }
}

// Row tiles: the tile's scale bytes, as whole words of 4 blocks (the swizzled layouts pad
// columns to a multiple of 4, so a partial word is still inside the buffer), copied to
// `dst` in shared memory without waiting (cp.async); one load per 4 blocks instead of one
// byte load per group, which cost ~8% of the kernel's time at 16384^2 (H100).
__device__ __forceinline__ void CopyTileScales(uint32_t* dst, const BulkTile& tile,
                                               const DequantizeParams& p) {
  const uint32_t shift = p.row_tiles.sf_shift;
  const uint32_t blocks = (tile.count * kGroup + (1u << shift) - 1) >> shift;
  if (threadIdx.x >= (blocks + 3) / 4) return;
  const uint8_t* src = tile.row.sf + p.sf_addr.ColPart(tile.first_col >> shift) +
                       threadIdx.x * p.sf_addr.col_tile_bytes;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(dst + threadIdx.x))),
               "l"(src)
               : "memory");
  asm volatile("cp.async.commit_group;" ::: "memory");
#else
  dst[threadIdx.x] = *reinterpret_cast<const uint32_t*>(src);
#endif
}

__device__ __forceinline__ void WaitTileScales() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

// Each block walks its tiles with the next tile's loads issued before this tile is decoded
// (loads of two tiles in flight per thread: the kernel mostly waits on loads).
template <typename Out, ElementRecipe kRecipe, int kTrip>
__global__ void __launch_bounds__(kThreads)
    BlockDequantizeBulkKernel(const uint8_t* __restrict__ codes, const uint8_t* __restrict__ scales,
                              const float* __restrict__ global_scale,
                              GroupOut<Out>* __restrict__ out, DequantizeParams p) {
  extern __shared__ __align__(128) uint4 tile_buffers[];
  __shared__ uint32_t tile_scales[2][kTileScaleWords];
  const uint32_t groups_per_row = static_cast<uint32_t>(p.cols / kGroup);
  const uint32_t total = static_cast<uint32_t>(p.batch * p.rows * groups_per_row);
  const uint32_t threads = blockDim.x;
  const uint32_t tile_groups = threads * kTrip;
  const bool row_tiles = p.row_tiles.enabled;
  const bool smem_scales = kScalesViaSmem<kRecipe> && row_tiles;
  const uint32_t tiles = row_tiles
                             ? static_cast<uint32_t>(p.batch * p.rows) * p.row_tiles.segments
                             : (total + tile_groups - 1) / tile_groups;
  auto tile_at = [&](uint32_t t) {
    return TileAt(t, scales, global_scale, p, tile_groups, groups_per_row, total);
  };
  BulkTile next;
  GroupIn next_in[kTrip];
  if (blockIdx.x < tiles) {
    next = tile_at(blockIdx.x);
    LoadTile<kRecipe>(next_in, next, codes, scales, global_scale, p, groups_per_row);
    if (smem_scales) CopyTileScales(tile_scales[0], next, p);
  }
  WaitTileScales();
  __syncthreads();
  uint32_t stage = 0, parity = 0;
  for (uint32_t t = blockIdx.x; t < tiles;
       t += gridDim.x, stage = (stage + 1) % kBulkStages, parity ^= 1) {
    const BulkTile tile = next;
    GroupIn in[kTrip];
#pragma unroll
    for (int u = 0; u < kTrip; ++u) in[u] = next_in[u];
    if (t + gridDim.x < tiles) {
      next = tile_at(t + gridDim.x);
      LoadTile<kRecipe>(next_in, next, codes, scales, global_scale, p, groups_per_row);
      if (smem_scales) CopyTileScales(tile_scales[parity ^ 1], next, p);
    }
    const uint8_t* scale_bytes = reinterpret_cast<const uint8_t*>(tile_scales[parity]);
    GroupOut<Out> v[kTrip];
#pragma unroll
    for (int u = 0; u < kTrip; ++u) {
      const uint32_t local = u * threads + threadIdx.x;
      if (local >= tile.count) continue;
      if (smem_scales) in[u].scale_byte = scale_bytes[(local * kGroup) >> p.row_tiles.sf_shift];
      v[u] = FinishGroup<Out, kRecipe>(in[u], p);
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int kWords = GroupOut<Out>::kWords;
    uint4* buffer = tile_buffers + stage * tile_groups * kWords;
    // The bulk store issued kBulkStages tiles ago must have read this stage's buffer.
    if (threadIdx.x == 0)
      asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(kBulkStages - 1) : "memory");
    __syncthreads();
#pragma unroll
    for (int u = 0; u < kTrip; ++u) {
      const uint32_t local = u * threads + threadIdx.x;
#pragma unroll
      for (int w = 0; w < kWords; ++w) buffer[local * kWords + w] = v[u].v[w];
    }
    // Shared-memory writes become visible to the bulk copy (the async proxy).
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    WaitTileScales();  // the next tile's scales, before the barrier that publishes them
    __syncthreads();
    if (threadIdx.x == 0) {
      const uint32_t bytes = tile.count * uint32_t{sizeof(GroupOut<Out>)};
      asm volatile(
          "cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(out + tile.base),
          "r"(static_cast<uint32_t>(__cvta_generic_to_shared(buffer))), "r"(bytes)
          : "memory");
      asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    }
#else  // PTX JIT-compiled for an older GPU: plain stores
#pragma unroll
    for (int u = 0; u < kTrip; ++u) {
      const uint32_t local = u * threads + threadIdx.x;
      if (local < tile.count) out[tile.base + local] = v[u];
    }
    WaitTileScales();
    __syncthreads();  // the next tile's scales are published; this tile's are read
#endif
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (threadIdx.x == 0) asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
#endif
}

// Calls launch(recipe) with the call's element recipe as a compile-time constant
// (std::integral_constant), the one place that maps the attributes to a kernel instantiation.
template <typename Launch>
void WithElementRecipe(const DequantizeParams& p, Launch&& launch) {
  using R = ElementRecipe;
  if (p.element_format != ElementFormat::kE2m1)
    launch(std::integral_constant<R, R::kE4m3>{});
  else if (p.device_math)
    launch(std::integral_constant<R, R::kE2m1DeviceMath>{});
  else if (p.plus_zero_code8)
    launch(std::integral_constant<R, R::kE2m1PlusZeroCode8>{});
  else
    launch(std::integral_constant<R, R::kE2m1>{});
}

template <typename Out, int kTrip>
void LaunchDequantizeTrip(cudaStream_t stream, const uint8_t* codes, const uint8_t* scales,
                          const float* gs, GroupOut<Out>* out, const DequantizeParams& p,
                          const LaunchShape& shape) {
  WithElementRecipe(p, [&](auto recipe) {
    BlockDequantizeKernel<Out, decltype(recipe)::value, kTrip>
        <<<shape.grid, shape.threads, 0, stream>>>(codes, scales, gs, out, p);
  });
}

template <typename Out>
void LaunchBulkDequantize(cudaStream_t stream, const uint8_t* codes, const uint8_t* scales,
                          const float* gs, GroupOut<Out>* out, DequantizeParams p,
                          int64_t groups) {
  constexpr int kTrip = kBulkGroupsPerTrip;
  // Row tiles when rows split into segments with little waste (at most 1/8 of the threads
  // idle in a row's last segment), for the swizzled layouts (their scale words are 4 blocks
  // of one row) and blocks of 16 or 32 (a tile holds whole words).
  const int64_t tile_groups = int64_t{kThreads} * kTrip;
  const int64_t groups_per_row = p.cols / kGroup;
  const int64_t segments = (groups_per_row + tile_groups - 1) / tile_groups;
  const int band_shift = p.sf_addr.row_tile_shift;
  const bool pow2_blocks = p.sf_vec_size == 16 || p.sf_vec_size == 32;  // whole words a tile
  if (kRowTiles && band_shift > 0 && pow2_blocks &&
      segments * tile_groups * 8 <= groups_per_row * 9 &&
      p.batch * p.rows * segments < (int64_t{1} << 31)) {
    p.row_tiles.enabled = true;
    p.row_tiles.sf_shift = p.sf_vec_size == 16 ? 4 : 5;
    p.row_tiles.segments = static_cast<uint32_t>(segments);
    p.row_tiles.band_shift = static_cast<uint32_t>(band_shift);
    p.row_tiles.band = 1u << band_shift;
    p.row_tiles.band_tiles_div = FastDiv32::Make(segments << band_shift);
  }
  const int smem = kBulkStages * kThreads * kTrip * static_cast<int>(sizeof(GroupOut<Out>));
  WithElementRecipe(p, [&](auto recipe) {
    auto kernel = BlockDequantizeBulkKernel<Out, decltype(recipe)::value, kTrip>;
    if (smem > 48 * 1024)  // above the default dynamic shared memory limit: opt in
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    const LaunchShape shape = ShapeForKernel(kernel, groups, kTrip, 0, smem);
    kernel<<<shape.grid, kThreads, smem, stream>>>(codes, scales, gs, out, p);
  });
}

template <typename Out>
void LaunchDequantize(cudaStream_t stream, const uint8_t* codes, const uint8_t* scales,
                      const float* gs, void* out, DequantizeParams p) {
  p.groups_per_row_div = FastDiv32::Make(p.cols / kGroup);
  const int64_t groups = p.batch * p.rows * p.cols / kGroup;
  auto* o = static_cast<GroupOut<Out>*>(out);
  // The occupancy of the large-problem kernel decides the shape (both kernels have the same
  // block size and fewer registers for one group).
  const LaunchShape shape =
      ShapeForKernel(BlockDequantizeKernel<Out, ElementRecipe::kE2m1, kGroupsPerTrip>, groups,
                     kGroupsPerTrip);
  if (shape.single)
    LaunchDequantizeTrip<Out, 1>(stream, codes, scales, gs, o, p, shape);
  else if (ComputeMajor() >= 9)
    LaunchBulkDequantize<Out>(stream, codes, scales, gs, o, p, groups);
  else
    LaunchDequantizeTrip<Out, kGroupsPerTrip>(stream, codes, scales, gs, o, p, shape);
}

ffi::Error BlockDequantizeCudaImpl(cudaStream_t stream, ffi::AnyBuffer codes,
                                   ffi::Buffer<ffi::U8> scales, ffi::Buffer<ffi::F32> global_scale,
                                   ffi::Result<ffi::AnyBuffer> out, int64_t element_format,
                                   int64_t scale_format, int64_t sf_vec_size, int64_t layout,
                                   bool plus_zero_code8, bool device_math,
                                   int64_t num_batch_dims) {
  constexpr const char* kOp = "dequantize";
  const Dims3 d = SplitDims(out->dimensions(), num_batch_dims);
  // Block sizes are multiples of 8 (16 or 32), so a group's 4 or 8 elements share one scale.
  if (sf_vec_size <= 0 || sf_vec_size % 8 != 0 || d.last % sf_vec_size != 0)
    return InvalidArgument(kOp, "K is not a multiple of sf_vec_size (a multiple of 8)");
  DequantizeParams p{d.batch, d.rows, d.last, sf_vec_size, layout,
                     SfBufferSize(layout, d.rows, d.last / sf_vec_size),
                     static_cast<ElementFormat>(element_format),
                     static_cast<ScaleFormat>(scale_format), plus_zero_code8, device_math,
                     SfAddressing::Make(layout, d.last / sf_vec_size), FastDiv32{},
                     FastDiv32::Make(d.rows), FastDiv32::Make(sf_vec_size)};
  const int64_t code_row = p.element_format == ElementFormat::kE2m1 ? d.last / 2 : d.last;
  if (d.batch * d.rows * d.last == 0) return ffi::Error::Success();
  if (auto err = CheckDequantizeInputs(kOp, d, codes, code_row,
                                       static_cast<int64_t>(scales.element_count()), p.sf_size,
                                       static_cast<int64_t>(global_scale.element_count()));
      err.failure())
    return err;
  // Groups of 8 elements are indexed with 32 bits, with room for one grid stride (at most a
  // few million) so that no index wraps in the grid-stride loop.
  if (d.batch * d.rows * d.last / kGroup >= (int64_t{1} << 32) - (int64_t{1} << 28))
    return InvalidArgument(kOp, "more than 2^35 - 2^31 elements in one call");
  const uint8_t* c = static_cast<const uint8_t*>(codes.untyped_data());
  const uint8_t* sf = scales.typed_data();
  const float* gs = global_scale.typed_data();
  void* o = out->untyped_data();
  switch (out->element_type()) {
    case ffi::F32: LaunchDequantize<float>(stream, c, sf, gs, o, p); break;
    case ffi::BF16: LaunchDequantize<Bf16Out>(stream, c, sf, gs, o, p); break;
    case ffi::F16: LaunchDequantize<F16Out>(stream, c, sf, gs, o, p); break;
    default:
      return InvalidArgument(kOp, "output must be float32, bfloat16 or float16");
  }
  return LaunchStatus(kOp);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BlockDequantizeCuda, BlockDequantizeCudaImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Arg<ffi::AnyBuffer>()           // codes
                                  .Arg<ffi::Buffer<ffi::U8>>()     // scales
                                  .Arg<ffi::Buffer<ffi::F32>>()    // global_scale
                                  .Ret<ffi::AnyBuffer>()           // out
                                  .Attr<int64_t>("element_format")
                                  .Attr<int64_t>("scale_format")
                                  .Attr<int64_t>("sf_vec_size")
                                  .Attr<int64_t>("layout")
                                  .Attr<bool>("plus_zero_code8")
                                  .Attr<bool>("device_math")
                                  .Attr<int64_t>("num_batch_dims"),
                              {ffi::Traits::kCmdBufferCompatible});

}  // namespace jax_fp4::cuda
