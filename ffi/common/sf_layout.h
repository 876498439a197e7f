// Scale-factor layouts (SPEC 3): where scale byte (row r, block column k) of an [M, C] scale
// matrix lands in the output buffer. Shared by the CPU handlers and the CUDA kernels.
#pragma once

#include <cstdint>

#include "common/formats.h"

namespace jax_fp4 {

// Same numbering as FlashInfer's SfLayout / QuantizationSFLayout.
enum SfLayout : int64_t { kLayout128x4 = 0, kLayout8x4 = 1, kLayoutLinear = 2 };

JAX_FP4_HD int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Rows of the padded scale matrix: 128 or 8 for the swizzled tiles, none for linear.
JAX_FP4_HD int64_t SfPaddedRows(int64_t layout, int64_t rows) {
  return layout == kLayout128x4 ? RoundUp(rows, 128)
         : layout == kLayout8x4 ? RoundUp(rows, 8)
                                : rows;
}

JAX_FP4_HD int64_t SfPaddedCols(int64_t layout, int64_t cols) {
  return layout == kLayoutLinear ? cols : RoundUp(cols, 4);
}

JAX_FP4_HD int64_t SfBufferSize(int64_t layout, int64_t rows, int64_t cols) {
  return SfPaddedRows(layout, rows) * SfPaddedCols(layout, cols);
}

// Byte offset of (r, k) in a buffer for a matrix with `cols` scale columns (before padding),
// split as RowPart(r) + ColPart(k) so a kernel pays for the row part once per row and no
// layout branch at all: every layout is
//   row part = (r >> row_tile_shift) * row_tile_bytes + (r & lane_mask) * lane_bytes
//              + ((r >> 5) & group_mask) * 4
//   col part = (k >> 2) * col_tile_bytes + (k & 3)
//  * 128x4: 512-byte tiles of 128 rows x 4 columns, row-tile-major; inside, [r%32][(r%128)/32][k%4];
//  * 8x4: 32-byte tiles of 8 rows x 4 columns, row-tile-major; row-major inside;
//  * linear: r * cols + k (one "tile" per row, column tiles of 4 bytes).
struct SfAddressing {
  int64_t row_tile_bytes = 0;
  int32_t row_tile_shift = 0, lane_mask = 0, lane_bytes = 0, lane_shift = 0, group_mask = 0,
          col_tile_bytes = 4;

  JAX_FP4_HD static SfAddressing Make(int64_t layout, int64_t cols) {
    SfAddressing a;
    const int64_t col_tiles = RoundUp(cols, 4) >> 2;
    if (layout == kLayout128x4) {
      a.row_tile_shift = 7;
      a.row_tile_bytes = col_tiles * 512;
      a.lane_mask = 31;
      a.lane_bytes = 16;
      a.lane_shift = 4;
      a.group_mask = 3;
      a.col_tile_bytes = 512;
    } else if (layout == kLayout8x4) {
      a.row_tile_shift = 3;
      a.row_tile_bytes = col_tiles * 32;
      a.lane_mask = 7;
      a.lane_bytes = 4;
      a.lane_shift = 2;
      a.col_tile_bytes = 32;
    } else {
      a.row_tile_bytes = cols;
    }
    return a;
  }
  JAX_FP4_HD int64_t RowPart(int64_t r) const {
    return (r >> row_tile_shift) * row_tile_bytes + (r & lane_mask) * lane_bytes +
           ((r >> 5) & group_mask) * 4;
  }
  JAX_FP4_HD int64_t ColPart(int64_t k) const { return (k >> 2) * col_tile_bytes + (k & 3); }
  JAX_FP4_HD int64_t Offset(int64_t r, int64_t k) const { return RowPart(r) + ColPart(k); }
  // Swizzled layouts: the row, within its row tile, of the 4-byte word at byte `o` of a row
  // tile (RowPart's in-tile terms inverted; every word of a tile holds one row's 4 columns).
  JAX_FP4_HD uint32_t TileRowOfWord(uint32_t o) const {
    return ((o >> lane_shift) & static_cast<uint32_t>(lane_mask)) +
           ((o >> 2) & static_cast<uint32_t>(group_mask)) * 32u;
  }
};

JAX_FP4_HD int64_t SfOffset(int64_t layout, int64_t r, int64_t k, int64_t cols) {
  return SfAddressing::Make(layout, cols).Offset(r, k);
}

// Inverse of SfOffset for the swizzled layouts: which (r, k) a buffer byte holds. Padding
// bytes map to r >= rows or k >= cols.
JAX_FP4_HD void SfOffsetInverse(int64_t layout, int64_t offset, int64_t cols, int64_t& r,
                                int64_t& k) {
  const int64_t col_tiles = RoundUp(cols, 4) >> 2;
  if (layout == kLayout128x4) {
    const int64_t tile = offset >> 9, inner = offset & 511;
    r = (tile / col_tiles) * 128 + ((inner >> 2) & 3) * 32 + (inner >> 4);
    k = (tile % col_tiles) * 4 + (inner & 3);
  } else if (layout == kLayout8x4) {
    const int64_t tile = offset >> 5, inner = offset & 31;
    r = (tile / col_tiles) * 8 + (inner >> 2);
    k = (tile % col_tiles) * 4 + (inner & 3);
  } else {
    r = cols ? offset / cols : 0;
    k = cols ? offset % cols : 0;
  }
}

// TRT-LLM-gen row shuffle (shuffle_matrix_a, SPEC 5.11): output row r of each `block` rows
// (16 or 32) takes input row (r % 8) * (block / 8) + r / 8 of the same block. 0 = identity.
// Any integer type: the CUDA kernels use 32 bits.
template <typename Index>
JAX_FP4_HD Index ShuffleSourceRow(Index r, Index block) {
  if (block == 0) return r;
  const Index in_block = r % block;
  return r - in_block + (in_block % 8) * (block / 8) + in_block / 8;
}

}  // namespace jax_fp4
