// Dense float32 convolution on AVX2/FMA, in the style of oneDNN's direct kernels: one
// microkernel (dense_microkernel.h) holds a register tile of up to 6 "pixels" x 2 vectors
// of 8 lanes (12 ymm accumulators), or on CPUs with AVX-512 6 x 4 vectors of 16 lanes (24
// zmm accumulators), and per reduction step loads the lane vectors and broadcasts one
// value per pixel against them. It runs in two orientations:
// - channels_last rows (forward_dense): pixels along an output row, lanes output channels
//   of a weight repacked into blocks of a vector's lanes (cached while the weight is
//   unchanged); any kernel size, stride, dilation and padding.
// - NCHW planes (planar_conv): pixels 6 output channels broadcast from the weight where
//   it lies, lanes pixels of a padded plane; stride 1, with strided convolutions split by
//   stride phase.
// grad_input runs phase by phase of the stride (grad_input_as_forward.h), each phase in
// whichever orientation suits its rows and channels. grad_weight runs it with output
// channels broadcast and input channels as lanes; the 1x1 grad_weight over large planes
// uses dot-product tiles instead.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/accumulate.h>
#include <c10/util/strides.h>
#include <immintrin.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "../grad_input_as_forward.h"
#include "avx2_vectors.h"
#include "dense_microkernel.h"
#include "isa.h"
#include "kernels.h"
#include "scratch.h"
#include "weight_cache.h"

namespace classic_ops::cpu {
namespace {

// Lanes of a ymm register: the 8x8 transposes and gathers that pack weights and move
// layouts work in groups of them, whichever microkernels run.
constexpr int64_t kLanes = kAvx2Tile.lanes;
// The widest vector any microkernel set reads, for the slack past buffers.
constexpr int64_t kMostLanes = kAvx512Tile.lanes;
// forward_dense: the most bytes of weight panel one reduction chunk sweeps (of a 1 MB L2),
// and of sums a band of rows that the chunks sweep in turn keeps.
constexpr int64_t kPanelBytes = int64_t{768} << 10;
constexpr int64_t kBandFloats = int64_t{16} << 10;

// A convolution's weight read where it lies: coefficient (o, i, r, s) (output channel,
// input channel, kernel row and column of the convolution it serves) at
// base + o * out + i * in + r * row + s * col. The grad_input filters are the forward one
// read with channels swapped and taps backwards, a stride phase's with every stride-th tap.
struct PlanarWeight {
  const float* base;
  int64_t out, in, row, col;
};

// `count` items in as few tiles as tiles of `most` allow, of sizes that differ by one at
// most, not full tiles and a remainder: a tile of 2 pixels x 2 blocks has 4 chains of
// dependent FMAs, too few to cover their latency (a row of 14 pixels as 6 + 6 + 2: the 2
// took a third as long as the 6s). The wider tiles are spread evenly among the narrower, so
// that a run of consecutive tiles, a thread's share, holds its share of the items (16 lane
// blocks in groups of 3 as 2, 3, 3, 2, 3, 3; as 3, 3, 3, 3, 2, 2 one of two threads had 9).
struct EvenTiles {
  int64_t count, tiles;
  EvenTiles(int64_t count, int64_t most) : count(count), tiles((count + most - 1) / most) {}
  int64_t start(int64_t tile) const { return tile * count / tiles; }
  int size(int64_t tile) const { return static_cast<int>(start(tile + 1) - start(tile)); }
};

// forward_dense's largest tile for rows of `width` pixels and `blocks` lane vectors: of the
// set's two shapes, the one whose tiles load fewer operands a reduction step along a row
// (each row tile every weight vector, each group of vectors every pixel). Rows of 7 pixels
// in one 7 x 3 tile, not 4 x 4 + 3 x 4, read their weight from L2 once, not twice: one
// thread, channels_last, 1024x7x7 -> 1024 1x1 89 -> 94-97 GFLOP/s, 160x7x7 -> 320 3x3
// 92 -> 102. Few vectors stay on the wide tile (32x112x112 -> 64 1x1: 7 x 2 tiles ran 5%
// slower).
std::pair<int, int> row_tile_shape(const TileShape& tile, int64_t width, int64_t blocks) {
  const auto loads = [&](int pixels, int most_blocks) {
    return EvenTiles(width, pixels).tiles * blocks + width * EvenTiles(blocks, most_blocks).tiles;
  };
  if (loads(tile.long_pixels, tile.long_blocks) < loads(tile.pixels, tile.blocks)) {
    return {tile.long_pixels, tile.long_blocks};
  }
  return {tile.pixels, tile.blocks};
}

// The weight (K, C, R, S) of a dense convolution, contiguous NCHW or channels_last, read
// where it lies with taps (r0 + r * row_step, s0 + s * col_step).
PlanarWeight weight_taps(const at::Tensor& weight, int64_t r0, int64_t s0, int64_t row_step, int64_t col_step) {
  return {weight.const_data_ptr<float>() + r0 * weight.stride(2) + s0 * weight.stride(3), weight.stride(0),
          weight.stride(1), row_step * weight.stride(2), col_step * weight.stride(3)};
}

// out[lane] = src[lane * stride] for the first `lanes` of 8 lanes, zero in the others.
__attribute__((target("avx2"))) void gather_lanes(const float* src, int32_t stride, int64_t lanes,
                                                  float* out) {
  if (stride == 1) {  // one load, which a gather is not
    _mm256_storeu_ps(out, _mm256_maskload_ps(src, first_lanes(lanes)));
    return;
  }
  const __m256i index =
      _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
  const __m256 mask = _mm256_castsi256_ps(first_lanes(lanes));
  _mm256_storeu_ps(out, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), src, index, mask, sizeof(float)));
}

// m[j] = column j of the 8x8 matrix whose row r is m[r].
__attribute__((target("avx2"), always_inline)) inline void transpose8x8(__m256 (&m)[8]) {
  __m256 pairs[8], quads[8];
  for (int r = 0; r < 8; r += 2) {
    pairs[r] = _mm256_unpacklo_ps(m[r], m[r + 1]);
    pairs[r + 1] = _mm256_unpackhi_ps(m[r], m[r + 1]);
  }
  for (int r = 0; r < 8; r += 4) {
    for (int h = 0; h < 2; ++h) {
      quads[r + 2 * h] = _mm256_shuffle_ps(pairs[r + h], pairs[r + h + 2], 0x44);
      quads[r + 2 * h + 1] = _mm256_shuffle_ps(pairs[r + h], pairs[r + h + 2], 0xEE);
    }
  }
  for (int j = 0; j < 4; ++j) {
    m[j] = _mm256_permute2f128_ps(quads[j], quads[j + 4], 0x20);
    m[j + 4] = _mm256_permute2f128_ps(quads[j], quads[j + 4], 0x31);
  }
}

// The taps of 8 lanes of input channels i and i + 1 (two: each tap's vectors for them fill
// a 64-byte line, which one at a time were written in halves) into their packed places,
// out + j * tap_stride (+ channel_step for i + 1) for tap j, where a lane's taps lie together in
// memory, tap j at first + direction * j (direction +-1): 8x8 transposes of 8 taps at a
// time, a gather for each tap past the last 8. (A 3x3 filter's ninth tap by a second
// transpose overlapping the first wrote 16 taps for 9, and its pack took a third of a
// 256x14x14 -> 512 stride-2 grad_input.)
__attribute__((target("avx2"))) void transpose_taps(const float* first, int64_t lane_stride,
                                                    int64_t channel_stride, int64_t taps,
                                                    int64_t direction, float* out, int64_t tap_stride,
                                                    int64_t channel_step) {
  const float* lowest = direction > 0 ? first : first - (taps - 1);
  const int64_t whole = taps / kLanes * kLanes;
  for (int64_t start = 0; start < whole; start += kLanes) {  // in memory order
    __m256 m[2][kLanes];
    for (int c = 0; c < 2; ++c) {
      for (int lane = 0; lane < kLanes; ++lane) {
        m[c][lane] = _mm256_loadu_ps(lowest + c * channel_stride + lane * lane_stride + start);
      }
      transpose8x8(m[c]);
    }
    for (int q = 0; q < kLanes; ++q) {
      float* tap = out + (direction > 0 ? start + q : taps - 1 - start - q) * tap_stride;
      _mm256_storeu_ps(tap, m[0][q]);
      _mm256_storeu_ps(tap + channel_step, m[1][q]);
    }
  }
  for (int64_t start = whole; start < taps; ++start) {
    float* tap = out + (direction > 0 ? start : taps - 1 - start) * tap_stride;
    for (int c = 0; c < 2; ++c) {
      gather_lanes(lowest + c * channel_stride + start, static_cast<int32_t>(lane_stride), kLanes,
                   tap + c * channel_step);
    }
  }
}

// dst[j * dst_row + i] = src[i * src_row + j] for i < rows and j < cols, cols at least 8:
// 8x8 transposes, the last block along each overlapping the one before; fewer than 8 rows
// (a first layer's 3 channels) fill the rest of their block with zeros and store `rows`
// lanes (element by element, NCHW -> NHWC of MobileNet's 3x224x224 input took a quarter as
// long as the convolution after it).
__attribute__((target("avx2"))) void transpose(const float* src, int64_t src_row, int64_t rows, int64_t cols,
                                               float* dst, int64_t dst_row) {
  const int64_t block_rows = std::min(rows, kLanes);
  const __m256i row_lanes = first_lanes(block_rows);
  // Fewer than 8 rows into a destination without gaps (dst_row == rows): a block's 8 columns
  // are 8 * rows consecutive floats, `rows` whole vectors, each put together from the rows
  // by permutes (float f of vector v is column (8v + f) / rows of row (8v + f) % rows) and
  // blends. Eight masked stores a block took twice as long as the 3-channel first layer's
  // grad_weight microkernels (vmaskmovps stores are slow on AMD); a transpose stored to the
  // stack and read back as vectors (by a call of memmove per block) was slower: MobileNet's
  // 3x224x224 -> 32 3x3/2 NCHW forward, one thread, 0.39 -> 0.36 ms.
  const bool dense_rows = rows < kLanes && dst_row == rows;
  __m256i column_of[kLanes];
  __m256 from_row[kLanes][kLanes];  // [v][r]: the floats of vector v that row r gives
  for (int64_t v = 0; dense_rows && v < rows; ++v) {
    alignas(32) int32_t columns[kLanes];
    alignas(32) float selected[kLanes][kLanes];
    for (int f = 0; f < kLanes; ++f) {
      columns[f] = static_cast<int32_t>((v * kLanes + f) / rows);
      for (int64_t r = 0; r < rows; ++r) selected[r][f] = (v * kLanes + f) % rows == r ? -1.0f : 0.0f;
    }
    column_of[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(columns));
    for (int64_t r = 0; r < rows; ++r) from_row[v][r] = _mm256_load_ps(selected[r]);
  }
  for (int64_t i = 0; i < rows; i += kLanes) {
    const int64_t i0 = std::max<int64_t>(0, std::min(i, rows - kLanes));
    for (int64_t j = 0; j < cols; j += kLanes) {
      const int64_t j0 = std::min(j, cols - kLanes);
      __m256 m[kLanes];
      for (int r = 0; r < kLanes; ++r) {
        m[r] = r < block_rows ? _mm256_loadu_ps(src + (i0 + r) * src_row + j0) : _mm256_setzero_ps();
      }
      if (dense_rows) {
        for (int64_t v = 0; v < rows; ++v) {
          __m256 out = _mm256_permutevar8x32_ps(m[0], column_of[v]);
          for (int64_t r = 1; r < rows; ++r) {
            out = _mm256_blendv_ps(out, _mm256_permutevar8x32_ps(m[r], column_of[v]), from_row[v][r]);
          }
          _mm256_storeu_ps(dst + j0 * rows + v * kLanes, out);
        }
        continue;
      }
      transpose8x8(m);
      for (int q = 0; q < kLanes; ++q) {
        float* out = dst + (j0 + q) * dst_row + i0;
        if (block_rows == kLanes) {
          _mm256_storeu_ps(out, m[q]);
        } else {
          _mm256_maskstore_ps(out, row_lanes, m[q]);
        }
      }
    }
  }
}

// The weight as the channels_last microkernel reads it, (ceil(O / L), R, S, I, L) for
// vectors of L lanes (8 or 16), output channels past O zero, for `w` of O output and I
// input channels and R x S taps. One pass over the weight: backward packs on every call,
// and a large layer's weight (512x512x3x3: 9 MB) costs as much to move as its convolution
// of a 7x7 plane. `packed` is of packed_sizes(O, I, R, S, L).
void pack_weight(const PlanarWeight& w, int64_t out_ch, const at::Tensor& packed) {
  const int64_t blocks = packed.size(0), kernel_h = packed.size(1), kernel_w = packed.size(2);
  const int64_t in_ch = packed.size(3), lanes = packed.size(4);
  TORCH_CHECK(w.out <= std::numeric_limits<int32_t>::max() / kLanes, "weight too large to pack: ", w.out,
              " floats per output channel");
  float* dst = packed.mutable_data_ptr<float>();
  const int64_t taps = kernel_h * kernel_w;
  const int64_t i_chunks = (in_ch + kLanes - 1) / kLanes;
  if (w.out == 1) {
    // Lanes one float apart (the grad_input filter of a 1x1 or a channels_last weight):
    // plain loads, by chunks of 8 input channels whose weight lines are read in order,
    // each block's lines for them written in a run. (Gathered a lane strip at a time down
    // the weight, a 1024x1024x1x1 filter's pack took as long as its grad_input over 7x7
    // planes; so, under half as long.)
    at::parallel_for(0, i_chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        const int64_t i0 = chunk * kLanes, i1 = std::min(in_ch, i0 + kLanes);
        for (int64_t o0 = 0; o0 < blocks * lanes; o0 += kLanes) {
          const int64_t valid = std::clamp<int64_t>(out_ch - o0, 0, kLanes);
          float* block = dst + o0 / lanes * taps * in_ch * lanes + o0 % lanes;
          for (int64_t tap = 0; tap < taps; ++tap) {
            const float* line = w.base + tap / kernel_w * w.row + tap % kernel_w * w.col + o0;
            for (int64_t i = i0; i < i1; ++i) {
              gather_lanes(line + i * w.in, 1, valid, block + (tap * in_ch + i) * lanes);
            }
          }
        }
      }
    });
    return;
  }
  // Where a lane's taps lie together in memory (a whole filter, flipped or not), or its
  // input channels (a 1x1 or channels_last one: gathered, a 1024x1024x1x1 pack took 80% as
  // long as its forward over 7x7 planes), whole groups of 8 lanes go by transposes, else by
  // a gather per tap. Tasks of 8 input channels x 1 lane block, in the order of the packed
  // layout, write each tap's lines whole and in turn. (A 256x256x3x3 grad_input filter:
  // 125 us with gathers in weight order, 82 us so.)
  const bool contiguous_taps = (w.col == 1 || w.col == -1) && w.row == w.col * kernel_w && taps >= kLanes;
  at::parallel_for(0, blocks * i_chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = task / i_chunks, i0 = task % i_chunks * kLanes, i1 = std::min(in_ch, i0 + kLanes);
      float* block_out = dst + block * taps * in_ch * lanes;
      if (w.in == 1 && (block + 1) * lanes <= out_ch && i1 - i0 == kLanes) {
        for (int64_t group = 0; group < lanes; group += kLanes) {
          for (int64_t r = 0; r < kernel_h; ++r) {
            for (int64_t s = 0; s < kernel_w; ++s) {
              transpose(w.base + (block * lanes + group) * w.out + i0 + r * w.row + s * w.col, w.out, kLanes, kLanes,
                        block_out + ((r * kernel_w + s) * in_ch + i0) * lanes + group, lanes);
            }
          }
        }
        continue;
      }
      // Input channel by channel (or pair by pair), each with all its lane groups: a tap's
      // 64-byte line is written whole at once. Group by group, each line was written in
      // halves, and in between a channel's 9 tap lines, in_ch x 64 bytes apart (32 KB for
      // 512 channels: one set of an 8-way L1), evicted it. The pack's share of a
      // 256x14x14 -> 512 stride-2 NCHW grad_input, one thread: 24% -> 19% of the samples.
      for (int64_t i = i0; i < i1;) {
        const int64_t step = contiguous_taps && i + 1 < i1 ? 2 : 1;
        for (int64_t group = 0; group < lanes; group += kLanes) {
          const int64_t group_lanes = std::clamp<int64_t>(out_ch - block * lanes - group, 0, kLanes);
          const float* src = w.base + (block * lanes + group) * w.out + i * w.in;
          float* out = block_out + group + i * lanes;
          if (step == 2 && group_lanes == kLanes) {
            transpose_taps(src, w.out, w.in, taps, w.col, out, in_ch * lanes, lanes);
            continue;
          }
          for (int64_t j = 0; j < step; ++j) {
            for (int64_t r = 0; r < kernel_h; ++r) {
              for (int64_t s = 0; s < kernel_w; ++s) {
                gather_lanes(src + j * w.in + r * w.row + s * w.col, static_cast<int32_t>(w.out), group_lanes,
                             out + ((r * kernel_w + s) * in_ch + j) * lanes);
              }
            }
          }
        }
        i += step;
      }
    }
  });
}

std::vector<int64_t> packed_sizes(int64_t out_ch, int64_t in_ch, int64_t kernel_h, int64_t kernel_w,
                                  int64_t lanes) {
  return {(out_ch + lanes - 1) / lanes, kernel_h, kernel_w, in_ch, lanes};
}

// The microkernels the kernels run: the widest set the CPU has.
const MicrokernelSet& widest_microkernels() {
  return use_avx512() ? kAvx512Microkernels : kAvx2Microkernels;
}

// dst[a * dst_a + b * dst_b] = src[a * src_a + b * src_b] for a < rows, b < cols: the
// layout changes between NCHW, NHWC and the kernels' buffers. Lines contiguous on both
// sides go by copy_row (one copy where the whole block is), a line contiguous on one side
// and across lines on the other by 8x8 transposes (8 columns or more), the rest element by
// element.
__attribute__((target("avx2"))) void copy_matrix(const float* src, int64_t src_a, int64_t src_b, int64_t rows,
                                                 int64_t cols, float* dst, int64_t dst_a, int64_t dst_b) {
  if (src_b != 1 && src_a == 1) {  // make b the axis along which src is contiguous, if any
    std::swap(src_a, src_b);
    std::swap(dst_a, dst_b);
    std::swap(rows, cols);
  }
  if (src_b == 1 && dst_b == 1) {
    if (src_a == cols && dst_a == cols) {
      copy_row(src, rows * cols, dst);
      return;
    }
    for (int64_t a = 0; a < rows; ++a) copy_row(src + a * src_a, cols, dst + a * dst_a);
  } else if (src_b == 1 && dst_a == 1 && cols >= kLanes) {
    transpose(src, src_a, rows, cols, dst, dst_b);
  } else {
    for (int64_t a = 0; a < rows; ++a) {
      for (int64_t b = 0; b < cols; ++b) dst[a * dst_a + b * dst_b] = src[a * src_a + b * src_b];
    }
  }
}

// grad_weight (K, C, R, S), contiguous NCHW or channels_last, from the microkernel's sums:
// (K, R, S, C), or (R, S, C, K) with `taps_outer`. Per output channel, into NCHW a transpose
// of R*S rows, by 8x8 blocks where there are 8 taps and channels or more (512x512x3x3:
// 0.75 ms one float at a time from (R, S, K, C), whose rows for one output channel lie
// 1 MB apart, all in one cache set; 0.5 ms so), into channels_last row copies.
void unpack_tap_sums(const at::Tensor& sums, bool taps_outer, const at::Tensor& grad_weight) {
  const int64_t k = grad_weight.size(0), c = grad_weight.size(1);
  const int64_t taps = grad_weight.size(2) * grad_weight.size(3);
  // grad_weight is contiguous NCHW or channels_last: its taps, r * S + s, are one stride apart.
  TORCH_INTERNAL_ASSERT(grad_weight.stride(2) == grad_weight.size(3) * grad_weight.stride(3));
  const int64_t dst_o = grad_weight.stride(0), dst_i = grad_weight.stride(1), dst_t = grad_weight.stride(3);
  const float* src = sums.const_data_ptr<float>();
  float* dst = grad_weight.mutable_data_ptr<float>();
  // Sum (tap t, channel i) of output channel o.
  const int64_t o_step = taps_outer ? 1 : taps * c, t_step = taps_outer ? c * k : c, i_step = taps_outer ? k : 1;
  at::parallel_for(0, k, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      copy_matrix(src + o * o_step, t_step, i_step, taps, c, dst + o * dst_o, dst_t, dst_i);
    }
  });
}

// The input as NHWC with the padding materialized, so the microkernel needs no bounds checks,
// followed by `slack` zeros (for vector loads of a partial channel block); in scratch of
// `use` unless the input is NHWC already and needs neither.
at::Tensor padded_nhwc(const at::Tensor& input, const ConvGeometry& g, Scratch use, int64_t slack = 0) {
  const at::Tensor nhwc = input.permute({0, 2, 3, 1});
  const bool padded = g.pad_h != 0 || g.pad_w != 0;
  // Contiguity leaves the strides of size-1 dimensions free (one channel's: H * W), where
  // the kernels read NHWC's own.
  if (!padded && slack == 0 && nhwc.is_contiguous()) {
    return nhwc.as_strided(nhwc.sizes(), c10::contiguous_strides(nhwc.sizes()));
  }
  const int64_t c = g.in_channels, h = g.in_h + 2 * g.pad_h, w = g.in_w + 2 * g.pad_w;
  const int64_t count = g.batch * h * w * c;
  const at::Tensor buffer = scratch(use, {count + slack});
  // Row by row, zeroing only the padding (ATen's permuting copy into a zeroed buffer was
  // slower: for MobileNet's 3x224x224 first layer, zeroing took as long as the convolution).
  const int64_t image_step = input.stride(0), channel_step = input.stride(1);
  const int64_t row_step = input.stride(2), pixel_step = input.stride(3);
  const float* src = input.const_data_ptr<float>();
  float* dst = buffer.mutable_data_ptr<float>();
  std::fill(dst + count, dst + count + slack, 0.0f);
  at::parallel_for(0, g.batch * h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / h, ih = row % h - g.pad_h;
      float* out = dst + row * w * c;
      if (ih < 0 || ih >= g.in_h) {
        std::fill(out, out + w * c, 0.0f);
        continue;
      }
      std::fill(out, out + g.pad_w * c, 0.0f);
      std::fill(out + (g.pad_w + g.in_w) * c, out + w * c, 0.0f);
      copy_matrix(src + n * image_step + ih * row_step, pixel_step, channel_step, g.in_w, c, out + g.pad_w * c, c,
                  1);
    }
  });
  return buffer.narrow(0, 0, count).view({g.batch, h, w, c});
}

// Which taps of a filter a convolution uses: tap (r, s) of the convolution is
// (row0 + r * row_step, col0 + s * col_step) of the filter. All of them by default; a stride
// phase of grad_input uses every stride-th of the flipped filter.
struct FilterTaps {
  int64_t row0 = 0, col0 = 0, row_step = 1, col_step = 1;
};

// Where forward_dense reads its weight: the vector of `lanes` output channels of block b,
// for tap (r, s) and input channel i, at base + b * block + r * tap_row + s * tap_col +
// i * step, `blocks` vectors across the output channels.
struct WeightPanel {
  const float* base;
  int64_t blocks, lanes, block, tap_row, tap_col, step;
};

// A weight packed by pack_weight (packed_sizes' layout), at `taps`.
WeightPanel packed_panel(const at::Tensor& packed, const FilterTaps& taps = {}) {
  const int64_t lanes = packed.size(4), pack_w = packed.size(2), c = packed.size(3);
  return {packed.const_data_ptr<float>() + (taps.row0 * pack_w + taps.col0) * c * lanes,
          packed.size(0),
          lanes,
          packed.size(1) * pack_w * c * lanes,
          taps.row_step * pack_w * c * lanes,
          taps.col_step * c * lanes,
          lanes};
}

// The convolution g of `x`, its input as NHWC (N, H, W, C) with the padding in place
// (padded_nhwc; pixels and channels contiguous, rows and images at any strides), into
// `output` (N, K, H, W) at any strides; `w` is where its weight lies, in vectors of as many
// lanes as one of the microkernel sets. Where output's channels are not contiguous (NCHW,
// or a stride phase of it), each task's row tile goes through a buffer of one row that
// stays in L1 and is written out from there: a whole channels_last result written and then
// converted cost another pass over memory (VGG-16's 64x224x224 layer: 12.8 MB written,
// read, written).
void forward_dense(const at::Tensor& x, const WeightPanel& w, const at::Tensor& bias, const at::Tensor& output,
                   const ConvGeometry& g) {
  TORCH_INTERNAL_ASSERT(x.stride(3) == 1 && x.stride(2) == g.in_channels);
  const int64_t blocks = w.blocks, lanes = w.lanes;
  const MicrokernelSet& set = lanes == kAvx512Tile.lanes ? kAvx512Microkernels : kAvx2Microkernels;
  TORCH_INTERNAL_ASSERT(set.tile.lanes == lanes);
  const auto [most_pixels, most_blocks] = row_tile_shape(set.tile, g.out_w, blocks);
  at::Tensor bias_padded = at::zeros({blocks * lanes}, output.options());
  if (bias.defined()) bias_padded.narrow(0, 0, g.out_channels).copy_(bias);

  const bool lanes_contiguous = output.stride(1) == 1;
  const int64_t row_channels = most_blocks * lanes;  // a buffered row's floats per pixel
  const int64_t c = g.in_channels, x_row_step = x.stride(1);
  const TileSteps st{/*pixel=*/g.stride_w * c, /*tap_row=*/g.dilation_h * x_row_step,
                     /*tap_col=*/g.dilation_w * c, /*x_step=*/1, /*block=*/w.block, /*w_tap_row=*/w.tap_row,
                     /*w_tap_col=*/w.tap_col, /*w_step=*/w.step,
                     /*out_pixel=*/lanes_contiguous ? output.stride(3) : row_channels,
                     g.kernel_h, g.kernel_w, /*depth=*/c};
  const int last_lanes = static_cast<int>(g.out_channels - (blocks - 1) * lanes);
  // Groups of vectors of even sizes: 96 channels as 48 + 48, not 64 + 32, which left one of
  // two threads a third of the work (two threads, channels_last: 32x28x28 -> 96 3x3 0.28
  // -> 0.21 ms, 24x56x56 -> 144 1x1 0.17 -> 0.13).
  const EvenTiles block_groups(blocks, most_blocks);
  const int64_t rows = g.batch * g.out_h;
  const EvenTiles row_tiles(g.out_w, most_pixels);

  const float* xp = x.const_data_ptr<float>();
  const float* wp = w.base;
  const float* bp = bias_padded.const_data_ptr<float>();
  float* yp = output.mutable_data_ptr<float>();

  // A tile sweeps its group's whole weight panel (taps x input channels x the group's
  // vectors), which stays in L2 from one tile and row to the next where it fits. Where it
  // does not (512 -> 512 3x3 on AVX-512: 1.2 MB), the reduction runs in chunks of input
  // channels whose panel does, each chunk over a band of rows before the next, the sums
  // kept in the output (or the band's buffer) in between. One thread, same process:
  // channels_last 512x7x7 -> 512 88-99 -> 124 GFLOP/s, 512x14x14 141-164 -> 180; NCHW
  // 512x14x14 137-148 -> 153-160. Panels of 590 KB (256 channels) ran no faster in two.
  const int64_t channel_panel_bytes = g.kernel_h * g.kernel_w * most_blocks * lanes * int64_t{sizeof(float)};
  const int64_t chunks = (c * channel_panel_bytes + kPanelBytes - 1) / kPanelBytes;
  const int64_t chunk_channels = (c + chunks - 1) / chunks;
  const int64_t band_rows = chunks == 1 ? 1 : std::max<int64_t>(1, kBandFloats / (g.out_w * row_channels));

  // Where the whole weight fits in L2, tasks run row-major, each row through all block
  // groups, so that each thread reads its own rows of the input once and writes whole
  // pixels; else channel-block-major, so one thread's consecutive tasks reuse a group's
  // panel. Row-major, two threads, channels_last: 16x112x112 -> 96 1x1 0.28 -> 0.23 ms
  // (its 4.8 MB output written in halves of every pixel by both threads before); larger
  // layers within noise (64x112x112 -> 128 3x3, 128x56x56 -> 128 3x3).
  const int64_t groups = block_groups.tiles;
  const int64_t weight_bytes = c * g.kernel_h * g.kernel_w * blocks * lanes * int64_t{sizeof(float)};
  const bool rows_outer = chunks == 1 && weight_bytes <= kPanelBytes;
  const auto group_of = [&](int64_t task) { return rows_outer ? task % groups : task / rows; };
  const auto row_of = [&](int64_t task) { return rows_outer ? task / groups : task % rows; };
  at::parallel_for(0, groups * rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer(lanes_contiguous ? 0 : band_rows * g.out_w * row_channels);
    for (int64_t first = begin; first < end;) {
      const int64_t group = group_of(first);
      // The band: one task row-major (one chunk, so band_rows is 1 too).
      const int64_t last = rows_outer ? first + 1 : std::min({end, (group + 1) * rows, first + band_rows});
      const int64_t block0 = block_groups.start(group);
      const int nblocks = block_groups.size(group);
      const int tile_last_lanes = block0 + nblocks == blocks ? last_lanes : static_cast<int>(lanes);
      const auto out_row = [&](int64_t task) {
        const int64_t n = row_of(task) / g.out_h, oh = row_of(task) % g.out_h;
        return yp + n * output.stride(0) + oh * output.stride(2) + block0 * lanes * output.stride(1);
      };
      const auto y_row = [&](int64_t task) {
        return lanes_contiguous ? out_row(task) : buffer.data() + (task - first) * g.out_w * row_channels;
      };
      for (int64_t c0 = 0; c0 < c; c0 += chunk_channels) {
        TileSteps chunk_st = st;
        chunk_st.depth = std::min(chunk_channels, c - c0);
        // The first chunk starts from the bias, the others from the sums so far.
        const float* init = c0 == 0 ? bp + block0 * lanes : nullptr;
        const float* w_chunk = wp + block0 * st.block + c0 * st.w_step;
        for (int64_t task = first; task < last; ++task) {
          const int64_t n = row_of(task) / g.out_h, oh = row_of(task) % g.out_h;
          const float* x_row = xp + n * x.stride(0) + oh * g.stride_h * x_row_step + c0;
          float* y = y_row(task);
          for (int64_t tile = 0; tile < row_tiles.tiles; ++tile) {
            const int64_t ow = row_tiles.start(tile);
            set.at(nblocks, row_tiles.size(tile))(x_row + ow * st.pixel, w_chunk, init, y + ow * st.out_pixel,
                                                  chunk_st, tile_last_lanes);
          }
        }
      }
      if (!lanes_contiguous) {
        for (int64_t task = first; task < last; ++task) {
          copy_matrix(y_row(task), row_channels, 1, g.out_w, (nblocks - 1) * lanes + tile_last_lanes, out_row(task),
                      output.stride(3), output.stride(1));
        }
      }
      first = last;
    }
  });
}

// Floats a tile may read past the last padded plane: the garbage columns of the last row
// reach (kernel_w - 1) * dilation_w past it, a partial last vector up to 15 more.
int64_t planar_slack(const ConvGeometry& t) { return (t.kernel_w - 1) * t.dilation_w + kMostLanes; }

// Stride-1 convolution over NCHW planes with the pixels of a plane as lanes: the NCHW
// counterpart of forward_dense (which has channels as lanes), with no transposes and no
// weight repacking, as the weight is broadcast from wherever its coefficients lie. The
// input planes are zero-padded and flattened with their padded row width, so every tap is
// one constant offset. Tiles of set.tile.blocks vectors of positions run across rows
// where y's rows are as wide as the padded ones (its columns past out_w then come out as
// garbage, to be dropped), else each row has tiles of its own, the last one masked, and y
// can be the output itself.
//
// A weight of several taps whose output channels lie closer together than its reduction
// steps (the grad_input filters, phase_weight; a 1x1 one's 6 coefficients of a step lie
// together, and it is read in place) is gathered a tile of output channels at a time into a
// panel where each channel's steps lie together, and the tasks run tile by tile, so that a
// thread gathers each of its tiles once. Read in place, each reduction step of a tile jumps
// C x R x S floats to another filter; the whole filter copied beforehand was written out
// and read back. (512 -> 512 over 7x7, grad_input, one thread, same machine and hour: 6.2-6.7
// ms copied beforehand, 3.0-3.4 ms gathered; 7.5 ms gathered without prefetching.)
//
// y (N, O, out_h, padded row width or out_w; pixels contiguous) = init + conv(planes,
// weight) for stride-1 geometry t, where init is `bias` (O values) or, when bias is null,
// y itself (accumulation), and planes (N, I, in_h + 2 pad_h, in_w + 2 pad_w) hold the
// padded input, followed by planar_slack(t) readable floats.
void planar_accumulate(const MicrokernelSet& set, const at::Tensor& planes, const PlanarWeight& w,
                       const ConvGeometry& t, const float* bias, const at::Tensor& y) {
  const int64_t lanes = set.tile.lanes, most_channels = set.tile.pixels;
  const int64_t padded_w = planes.size(3), in_plane = planes.size(2) * padded_w;
  const int64_t o_count = t.out_channels, i_count = t.in_channels;
  const int64_t positions = t.out_h * padded_w;
  const bool across_rows = y.size(3) == padded_w && y.stride(2) == padded_w;
  TORCH_INTERNAL_ASSERT(y.stride(3) == 1 && (across_rows || y.size(3) == t.out_w));
  const int64_t taps = t.kernel_h * t.kernel_w;
  const bool gathered = taps > 1 && w.out < w.in;
  const PlanarWeight tile_weight = gathered ? PlanarWeight{nullptr, i_count * taps, taps, t.kernel_w, 1} : w;
  const TileSteps st{/*pixel=*/tile_weight.out, /*tap_row=*/tile_weight.row, /*tap_col=*/tile_weight.col,
                     /*x_step=*/tile_weight.in, /*block=*/lanes, /*w_tap_row=*/t.dilation_h * padded_w,
                     /*w_tap_col=*/t.dilation_w, /*w_step=*/in_plane, /*out_pixel=*/y.stride(1),
                     t.kernel_h, t.kernel_w, /*depth=*/i_count,
                     /*depth_outer=*/taps > 1 && std::abs(tile_weight.col) < tile_weight.in,
                     /*bias_per_pixel=*/true};
  std::vector<int64_t> tap_offsets;  // of w's taps, for gathering
  for (int64_t r = 0; gathered && r < t.kernel_h; ++r) {
    for (int64_t s = 0; s < t.kernel_w; ++s) tap_offsets.push_back(r * w.row + s * w.col);
  }
  // Copies output channels [o0, o0 + rows) of w into `tile`. The coefficients of the steps
  // ahead lie filters apart, where the hardware prefetchers do not look: they are fetched
  // 16 steps in advance (4 and 64 steps ran slower), a line per channel (a step's taps of a
  // channel lie together in the (K, C, R, S) weights the kernels are handed).
  const auto gather_tile = [&](int64_t o0, int64_t rows, float* tile) {
    constexpr int64_t kStepsAhead = 16;
    for (int64_t i = 0; i < i_count; ++i) {
      const int64_t ahead = i + kStepsAhead < i_count ? kStepsAhead * w.in : 0;
      for (int64_t o = 0; o < rows; ++o) {
        const float* src = w.base + (o0 + o) * w.out + i * w.in;
        __builtin_prefetch(src + ahead);
        float* dst = tile + (o * i_count + i) * taps;
        for (int64_t tap = 0; tap < taps; ++tap) dst[tap] = src[tap_offsets[tap]];
      }
    }
  };
  // Positions per task: at most about 512 KB of input rows (half a 1 MB L2), shared by the
  // channel tiles that follow each other in a thread, in chunks of equal size (threads
  // take runs of tasks: a short last chunk left one thread idle). Each chunk sweeps the
  // whole weight, which for a large layer comes from L3: 128 KB chunks swept a stride-2
  // grad_input's 1.2 MB weight twice per phase.
  const int64_t pixel_step = set.tile.blocks * lanes;
  const int64_t most = std::max<int64_t>(pixel_step, (int64_t{128} << 10) / i_count / pixel_step * pixel_step);
  // Chunks of whole rows where rows have tiles of their own.
  const int64_t chunk_step = across_rows ? pixel_step : padded_w;
  const int64_t chunks = (positions + most - 1) / most;
  const int64_t chunk = ((positions + chunks - 1) / chunks + chunk_step - 1) / chunk_step * chunk_step;
  const int64_t channel_tiles = (o_count + most_channels - 1) / most_channels;
  const float* xp = planes.const_data_ptr<float>();
  float* yp = y.mutable_data_ptr<float>();
  // Without taps (1x1), a thread copies its chunk once into a panel, each tile's positions
  // as i_count rows of pixel_step floats: read in place, every reduction step would start a new
  // cache line of another plane.
  const bool packed = t.kernel_h * t.kernel_w == 1;
  TORCH_INTERNAL_ASSERT(!packed || across_rows);  // a 1x1 convolution's rows are as wide as its input's
  TileSteps panel_st = st;
  panel_st.w_step = pixel_step;
  at::parallel_for(0, t.batch * chunks * channel_tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> panel(packed ? chunk * i_count : 0);
    int64_t panel_of = -1;  // the (image, chunk) in the panel
    std::vector<float> tile(gathered ? most_channels * i_count * taps : 0);
    int64_t tile_of = -1;  // the channel tile in `tile`
    for (int64_t task = begin; task < end; ++task) {
      const int64_t channel_tile = gathered ? task / (t.batch * chunks) : task % channel_tiles;
      const int64_t image_chunk = gathered ? task % (t.batch * chunks) : task / channel_tiles;
      const int64_t o0 = channel_tile * most_channels;
      const int64_t n = image_chunk / chunks, first = image_chunk % chunks * chunk;
      const int64_t last = std::min(positions, first + chunk);
      const float* x = xp + n * i_count * in_plane;
      if (packed && panel_of != image_chunk) {
        for (int64_t p0 = first; p0 < last; p0 += pixel_step) {
          // Lanes past the last position keep stale values; their results are not stored.
          const int64_t length = std::min(pixel_step, positions - p0);
          float* block = panel.data() + (p0 - first) * i_count;
          for (int64_t i = 0; i < i_count; ++i) copy_row(x + i * in_plane + p0, length, block + i * pixel_step);
        }
        panel_of = image_chunk;
      }
      const int rows = static_cast<int>(std::min(most_channels, o_count - o0));
      if (gathered && tile_of != channel_tile) {
        gather_tile(o0, rows, tile.data());
        tile_of = channel_tile;
      }
      float* y_channels = yp + n * y.stride(0) + o0 * y.stride(1);
      for (int64_t p0 = first; p0 < last;) {
        const int64_t row = p0 / padded_w, col = p0 % padded_w;
        const int64_t length = std::min(pixel_step, across_rows ? positions - p0 : t.out_w - col);
        const int nblocks = static_cast<int>((length + lanes - 1) / lanes);
        const int last_lanes = static_cast<int>(length - (nblocks - 1) * lanes);
        set.at(nblocks, rows)(
            gathered ? tile.data() : w.base + o0 * w.out, packed ? panel.data() + (p0 - first) * i_count : x + p0,
            bias ? bias + o0 : nullptr, y_channels + row * y.stride(2) + col, packed ? panel_st : st,
            last_lanes);
        p0 += length;
        if (!across_rows && col + length == t.out_w) p0 = (row + 1) * padded_w;
      }
    }
  });
}

// output (N, O, out_h, out_w), any strides, = what write(y) makes of planar rows y, every
// one of which it writes: y is the output itself where its pixels are contiguous and its
// rows are as wide as the padded ones or hold a whole tile (rows shorter leave lanes of
// every tile empty, where tiles across rows lose only the padding columns), else scratch
// (N, O, out_h, row_width) whose first out_w columns are copied out. (VGG-16's first layer
// at batch 8: the copy took a third of the time.)
template <typename Write>
void planar_output(const MicrokernelSet& set, const at::Tensor& output, int64_t row_width, Write&& write) {
  const bool direct = output.stride(3) == 1 &&
                      (row_width == output.size(3) ? output.stride(2) == row_width
                                                   : output.size(3) >= set.tile.blocks * set.tile.lanes);
  const at::Tensor y = direct ? output
                              : scratch(Scratch::kSums, {output.size(0), output.size(1), output.size(2), row_width});
  write(y);
  if (!direct) output.copy_(y.narrow(3, 0, output.size(3)));
}

// The bias as the planar kernel starts from it: zeros without one. (Starting the sums from
// it in registers spares a pass that fills the output and one that reads it back.)
at::Tensor planar_bias(const at::Tensor& bias, int64_t channels, const at::TensorOptions& options) {
  return bias.defined() ? bias.contiguous() : at::zeros({channels}, options);
}

// output = init + conv(planes, weight) for stride-1 geometry t, where init holds one
// value per output channel and planes (N, I, in_h + 2 pad_h, in_w + 2 pad_w) hold the
// padded input, followed by planar_slack(t) readable floats.
void planar_conv(const at::Tensor& planes, const PlanarWeight& w, const float* init,
                 const at::Tensor& output, const ConvGeometry& t) {
  const MicrokernelSet& set = widest_microkernels();
  planar_output(set, output, planes.size(3),
                [&](const at::Tensor& y) { planar_accumulate(set, planes, w, t, init, y); });
}

// The weight of a dense convolution, (K, C, R, S), as that of the forward convolution of
// one stride phase of its grad_input (grad_input_as_forward.h): channels swapped, and of
// the taps tap0, tap0 + stride, ... the last first.
PlanarWeight phase_weight(const at::Tensor& weight, const ConvGeometry& g, const StridePhase& ph,
                          const StridePhase& pw) {
  PlanarWeight w = weight_taps(weight, ph.tap0 + (ph.taps - 1) * g.stride_h, pw.tap0 + (pw.taps - 1) * g.stride_w,
                               -g.stride_h, -g.stride_w);
  std::swap(w.out, w.in);
  return w;
}

// The whole weight as the filter of stride-1 grad_input (the phase_weight of its one
// phase), packed for the channels_last microkernels: channels swapped, all taps flipped
// (into scratch: it is packed on every call, and a 512x512x3x3 filter is 9 MB).
at::Tensor pack_flipped(const at::Tensor& weight, const ConvGeometry& g) {
  const ConvGeometry unit = with_unit_stride(g);
  const StridePhase rows = stride_phase(0, g.in_h, g.kernel_h, 1, g.pad_h);
  const StridePhase cols = stride_phase(0, g.in_w, g.kernel_w, 1, g.pad_w);
  const at::Tensor packed =
      scratch(Scratch::kPackedFilter, packed_sizes(g.in_channels, g.out_channels, g.kernel_h, g.kernel_w,
                                                   widest_microkernels().tile.lanes));
  pack_weight(phase_weight(weight, unit, rows, cols), g.in_channels, packed);
  return packed;
}

// The filter of grad_input at `taps` (of the flipped filter), for the channels_last
// kernel: read in place from a weight whose input channels are contiguous (channels_last;
// the flipped filter's lanes) in whole vectors, else packed (once per call, into
// `packed`). In place, a channels_last model's grad_input neither copies its weight to NCHW
// (and compares the copy with the weight on every call) nor packs it: 9 MB each for a
// 512x512x3x3 weight. 1x1 weights are packed all the same: rows of 1024 channels lie 4 KB
// apart, and a tile's vectors of them would share a few cache sets.
WeightPanel flipped_panel(const at::Tensor& weight, const ConvGeometry& g, const FilterTaps& taps,
                          at::Tensor& packed) {
  const int64_t lanes = widest_microkernels().tile.lanes;
  const bool one_tap = g.kernel_h == 1 && g.kernel_w == 1;
  if (weight.stride(1) == 1 && g.in_channels % lanes == 0 && !one_tap) {
    const int64_t row = weight.stride(2), col = weight.stride(3);
    return {weight.const_data_ptr<float>() + (g.kernel_h - 1 - taps.row0) * row + (g.kernel_w - 1 - taps.col0) * col,
            g.in_channels / lanes,
            lanes,
            lanes,
            -taps.row_step * row,
            -taps.col_step * col,
            weight.stride(0)};
  }
  if (!packed.defined()) packed = pack_flipped(weight, g);
  return packed_panel(packed, taps);
}

// grad_input of a dense convolution with unit dilation, phase by phase of the stride (one
// phase for stride 1; grad_input_as_forward.h). Phases of convolutions with 8 input
// channels or more (a lane block) go through the channels_last kernel, into either layout:
// grad_output goes to NHWC once, each phase a window of it, and the filter is packed once
// for all phases. Strided phases have few taps, and each reduction step of the planar
// kernel starts a cache line of another plane (3x3/2 from 14x14, 256 -> 512 channels 1.33
// -> 1.00 ms); on the short rows where the planar kernel runs the forward pass faster
// (prefers_planar) its grad_input, whose broadcast coefficients lie an output channel
// apart, ran 2.1-2.9x slower into channels_last and 1.07-1.56x into NCHW (7x7 planes,
// 256 -> 512, 384 -> 384, 512 -> 512 and 1024 -> 512, 2 threads; ResNet-18's 512 -> 512
// 3.24 against 1.24 ms channels_last). 1x1 convolutions and narrow phases run the planar
// kernel into NCHW (it reads NCHW planes as they are) and the channels_last kernel into
// channels_last (it reads grad_output as it lies, where the planar kernel would transpose
// both).
void grad_input_by_phase(const at::Tensor& grad_output, const at::Tensor& weight,
                         const at::Tensor& grad_input, const ConvGeometry& g) {
  const bool pointwise = g.kernel_h == 1 && g.kernel_w == 1;
  const bool channels_last = !grad_input.is_contiguous();
  const at::Tensor zeros = planar_bias(at::Tensor(), g.in_channels, grad_input.options());
  // For the channels_last phases: the filter, and grad_output as NHWC padded so that each
  // phase's input is a window of it, made once for all of them.
  at::Tensor flipped, padded, nchw_weight;
  ConvGeometry padding = g;
  padding.in_channels = g.out_channels, padding.in_h = g.out_h, padding.in_w = g.out_w;
  padding.pad_h = phase_window_padding(g.in_h, g.out_h, g.kernel_h, g.stride_h, g.pad_h);
  padding.pad_w = phase_window_padding(g.in_w, g.out_w, g.kernel_w, g.stride_w, g.pad_w);
  for_each_stride_phase(g, grad_input, [&](const StridePhase& ph, const StridePhase& pw,
                                           const at::Tensor& phase_input) {
    const ConvGeometry t = phase_as_forward(g, ph, pw);
    const bool planar = (pointwise || t.out_channels < kLanes) && !channels_last;
    if (!planar) {
      if (!padded.defined()) padded = padded_nhwc(grad_output, padding, Scratch::kGradOutput);
      // The phase's tap j is flipped tap (last phase tap's) + j * stride.
      const FilterTaps taps{g.kernel_h - 1 - ph.tap0 - (ph.taps - 1) * g.stride_h,
                            g.kernel_w - 1 - pw.tap0 - (pw.taps - 1) * g.stride_w, g.stride_h, g.stride_w};
      const at::Tensor window =
          padded.narrow(1, padding.pad_h + ph.shift, t.in_h).narrow(2, padding.pad_w + pw.shift, t.in_w);
      forward_dense(window, flipped_panel(weight, g, taps, flipped), at::Tensor(), phase_input, t);
      return;
    }
    // A 1x1 phase with as many rows and columns as grad_output is all of it, and reads it
    // in place where it is contiguous NCHW: the 1x1 path reads nothing past a plane, so it
    // needs neither padding nor slack.
    const bool whole = t.kernel_h * t.kernel_w == 1 && t.in_h == g.out_h && t.in_w == g.out_w &&
                       grad_output.is_contiguous();
    const int64_t slack = planar_slack(t);
    const at::Tensor planes =
        whole ? grad_output
              : phase_grad_output(grad_output, g, ph, pw, slack,
                                  scratch(Scratch::kPhase, {t.batch * t.in_channels * t.in_h * t.in_w + slack}));
    // The planar kernel broadcasts the coefficients of a step one by one, which from a
    // channels_last weight come a cache line each: it reads an NCHW copy.
    if (!nchw_weight.defined()) nchw_weight = cached_contiguous(weight);
    planar_conv(planes, phase_weight(nchw_weight, g, ph, pw), zeros.const_data_ptr<float>(), phase_input, t);
  });
}

}  // namespace

void dense_conv2d_forward_planar_avx2(const at::Tensor& input, const at::Tensor& weight,
                                      const at::Tensor& bias, const at::Tensor& output,
                                      const ConvGeometry& g) {
  // The padded input split into stride_h x stride_w phases (rows a, a + stride_h, ...;
  // columns b, b + stride_w, ...), and the output the sum over phases of a stride-1
  // convolution of each with the taps (a + stride_h i, b + stride_w j): consecutive outputs
  // read consecutive phase pixels, so the lanes stay a plane's pixels. Stride 1 is one
  // phase, the padded input itself, with any dilation.
  const int64_t sh = g.stride_h, sw = g.stride_w, kw = g.kernel_w, taps = g.kernel_h * kw;
  const bool strided = sh != 1 || sw != 1;
  TORCH_INTERNAL_ASSERT(!strided || (g.dilation_h == 1 && g.dilation_w == 1));
  const int64_t rows = (g.in_h + 2 * g.pad_h + sh - 1) / sh, cols = (g.in_w + 2 * g.pad_w + sw - 1) / sw;
  const int64_t phase_floats = g.batch * g.in_channels * rows * cols;
  // A 1x1 convolution without stride or padding reads the input as it is: the 1x1 path
  // copies exactly the positions it uses into its panels, so nothing is read past a plane
  // (a 14x14 plane, not whole vectors, was copied into padded planes first).
  const bool in_place = taps == 1 && !strided && g.pad_h == 0 && g.pad_w == 0;
  const int64_t phases_h = std::min(sh, g.kernel_h), phases_w = std::min(sw, kw);
  const int64_t slack = ((kw + sw - 1) / sw - 1) * g.dilation_w + kMostLanes;
  const at::Tensor phases =
      in_place ? input : scratch(Scratch::kPhase, {phases_h * phases_w * phase_floats + slack}).zero_();
  // Phase positions [first, end) whose input position offset + stride * m - pad is inside
  // [0, size).
  const auto inside = [](int64_t offset, int64_t stride, int64_t pad, int64_t size, int64_t count) {
    const int64_t first = offset >= pad ? 0 : (pad - offset + stride - 1) / stride;
    const int64_t end = size - 1 + pad - offset >= 0 ? std::min(count, (size - 1 + pad - offset) / stride + 1) : 0;
    return std::make_pair(first, std::max(first, end));
  };
  const at::Tensor init = planar_bias(bias, g.out_channels, output.options());
  const MicrokernelSet& set = widest_microkernels();
  planar_output(set, output, cols, [&](const at::Tensor& y) {
    for (int64_t a = 0; a < phases_h; ++a) {
      for (int64_t b = 0; b < phases_w; ++b) {
        at::Tensor phase = in_place ? input
                                    : phases.narrow(0, (a * phases_w + b) * phase_floats, phase_floats)
                                          .view({g.batch, g.in_channels, rows, cols});
        const auto [m0, m1] = inside(a, sh, g.pad_h, g.in_h, rows);
        const auto [n0, n1] = inside(b, sw, g.pad_w, g.in_w, cols);
        if (!in_place && m0 < m1 && n0 < n1) {
          phase.narrow(2, m0, m1 - m0).narrow(3, n0, n1 - n0)
              .copy_(input.slice(2, a + sh * m0 - g.pad_h, a + sh * (m1 - 1) - g.pad_h + 1, sh)
                         .slice(3, b + sw * n0 - g.pad_w, b + sw * (n1 - 1) - g.pad_w + 1, sw));
        }
        ConvGeometry t = g;
        t.kernel_h = (g.kernel_h - a + sh - 1) / sh;
        t.kernel_w = (kw - b + sw - 1) / sw;
        t.in_h = rows;
        t.in_w = cols;
        t.stride_h = t.stride_w = 1;
        t.pad_h = t.pad_w = 0;
        // The first phase starts from the bias, the others add to what it wrote.
        planar_accumulate(set, phase, weight_taps(weight, a, b, sh, sw), t, a == 0 && b == 0 ? init.const_data_ptr<float>() : nullptr, y);
      }
    }
  });
}

void pointwise_conv2d_grad_weight_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                       const at::Tensor& grad_weight, const ConvGeometry& g) {
  // grad_weight (K x C) = sum over images of grad_output (K x P) . pixels (C x P)^T. On small
  // planes the fixed cost of each dot product (the lane sums that close it, one per output
  // and chunk of positions) outweighs the transposes the channels_last kernel pays (28x28
  // planes came out even); over channels_last tensors that kernel reads them as they lie.
  const int64_t k = g.out_channels, c = g.in_channels, plane = g.out_h * g.out_w;
  if (plane < 128 * kLanes || !grad_output.is_contiguous() || !input.is_contiguous()) {
    dense_conv2d_grad_weight_avx2(grad_output, input, grad_weight, g);
    return;
  }
  const bool strided = g.stride_h != 1 || g.stride_w != 1;
  const at::Tensor pixels =
      strided ? scratch(Scratch::kInput, {g.batch, c, g.out_h, g.out_w})
                    .copy_(input.slice(2, 0, c10::nullopt, g.stride_h).slice(3, 0, c10::nullopt, g.stride_w))
              : input;
  grad_weight.zero_();
  // Pixels per pass: about 256 KB of both operands, reused by all of a thread's tiles.
  const MicrokernelSet& set = widest_microkernels();
  const int64_t lanes = set.tile.lanes;
  const int64_t dot_rows = set.tile.dot_rows;
  constexpr int64_t kDotCols = MicrokernelSet::kDotCols;
  const int64_t chunk = std::max<int64_t>(8 * lanes, (int64_t{64} << 10) / (k + c) / lanes * lanes);
  const int64_t row_tiles = (k + dot_rows - 1) / dot_rows, col_tiles = (c + kDotCols - 1) / kDotCols;
  const float* gp = grad_output.const_data_ptr<float>();
  const float* xp = pixels.const_data_ptr<float>();
  float* wp = grad_weight.mutable_data_ptr<float>();
  at::parallel_for(0, row_tiles * col_tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = 0; n < g.batch; ++n) {
      for (int64_t q0 = 0; q0 < plane; q0 += chunk) {
        const int64_t length = std::min(chunk, plane - q0);
        for (int64_t task = begin; task < end; ++task) {
          const int64_t k0 = task / col_tiles * dot_rows, c0 = task % col_tiles * kDotCols;
          const int rows = static_cast<int>(std::min<int64_t>(dot_rows, k - k0));
          const int cols = static_cast<int>(std::min<int64_t>(kDotCols, c - c0));
          set.dot(rows, cols)(gp + (n * k + k0) * plane + q0, plane,
                                        xp + (n * c + c0) * plane + q0, plane, length,
                                        wp + k0 * c + c0, c);
        }
      }
    }
  });
}

bool dense_conv2d_grad_input_avx2(const at::Tensor& grad_output, const at::Tensor& weight,
                                  const at::Tensor& grad_input, const ConvGeometry& g) {
  // Phase by phase of the stride with unit dilation (no multiply meets a spread's zeros),
  // else through the channels_last forward kernel over grad_output spread by the stride.
  if (g.dilation_h == 1 && g.dilation_w == 1) {
    grad_input_by_phase(grad_output, weight, grad_input, g);
    return true;
  }
  if (!grad_input_as_forward_applies(g)) return false;
  const ConvGeometry t = stride1_grad_input_as_forward(with_unit_stride(g));
  forward_dense(padded_nhwc(spread_by_stride(grad_output, g, at::MemoryFormat::ChannelsLast), t, Scratch::kGradOutput),
                packed_panel(pack_flipped(weight, g)), at::Tensor(), grad_input, t);
  return true;
}

void dense_conv2d_grad_weight_avx2(const at::Tensor& grad_output, const at::Tensor& input,
                                   const at::Tensor& grad_weight, const ConvGeometry& g) {
  // For each tap (r, s): grad_weight[:, :, r, s] = sum over output pixels of the pixel's
  // grad_output channels times its input channels (shifted by the tap). The microkernel
  // runs it with the output pixels of a row as reduction steps and a chunk of output rows
  // as its kernel-row loop, so the sums stay in registers over the whole chunk, in one of
  // two orientations:
  // - per tap, 6 output channels as broadcast "pixels" (of grad_output) and a tile's
  //   vectors of input channels as lanes (of the input); sums (K, R, S, C), a 1x1
  //   grad_weight as it is;
  // - with fewer input channels than 8 (a first layer's 3 would fill 3 of 16 lanes), per
  //   kernel row, output channels as lanes (of grad_output) and as "pixels" 6 consecutive
  //   floats of an input row, which under one output pixel are the taps (s, c) of the
  //   kernel row in order (unit column dilation); sums (R, S, C, K).
  const MicrokernelSet& set = widest_microkernels();
  const int64_t k = g.out_channels, c = g.in_channels, vector_lanes = set.tile.lanes;
  const int most_pixels = set.tile.pixels, most_blocks = set.tile.blocks;
  const bool taps_as_pixels = c < kLanes && g.dilation_w == 1 && g.kernel_w > 1;
  // Vector operands read whole vectors: slack past the last one.
  const at::Tensor x = padded_nhwc(input, g, Scratch::kInput, /*slack=*/taps_as_pixels ? 0 : vector_lanes);
  ConvGeometry go_geometry = g;  // grad_output as the unpadded input of padded_nhwc
  go_geometry.in_channels = k, go_geometry.in_h = g.out_h, go_geometry.in_w = g.out_w;
  go_geometry.pad_h = go_geometry.pad_w = 0;
  const at::Tensor go =
      padded_nhwc(grad_output, go_geometry, Scratch::kGradOutput, /*slack=*/taps_as_pixels ? vector_lanes : 0);
  const bool one_tap = g.kernel_h == 1 && g.kernel_w == 1;
  const int64_t taps = g.kernel_h * g.kernel_w;
  const std::vector<int64_t> sums_sizes = taps_as_pixels ? std::vector<int64_t>{taps, c, k}
                                                         : std::vector<int64_t>{k, taps, c};
  at::Tensor sums = one_tap ? grad_weight : scratch(Scratch::kSums, sums_sizes);
  // The first chunk of rows starts the sums from zero "bias" vectors, the others add to
  // them (zeroing a 512x512x3x3 layer's 9 MB of sums first took a tenth of its time).
  static constexpr float kZeros[MicrokernelSet::kMostBlocks * kMostLanes] = {};

  const int64_t padded_h = g.in_h + 2 * g.pad_h, padded_w = g.in_w + 2 * g.pad_w;
  const int64_t x_row_floats = g.stride_h * padded_w * c, go_row_floats = g.out_w * k;
  // Rows per chunk: the chunk's input and grad_output rows fit in about 256 KB of cache,
  // reused by every tile of the thread.
  const int64_t chunk_rows = std::max<int64_t>(1, (int64_t{64} << 10) / (x_row_floats + go_row_floats));
  // Per tap group (a tap, or a kernel row): pixel tiles x lane block pairs.
  const int64_t tap_groups = taps_as_pixels ? g.kernel_h : g.kernel_h * g.kernel_w;
  const int64_t pixels = taps_as_pixels ? g.kernel_w * c : k, lanes = taps_as_pixels ? k : c;
  const EvenTiles pixel_tiles(pixels, most_pixels);
  const int64_t blocks = (lanes + vector_lanes - 1) / vector_lanes;
  const EvenTiles block_groups(blocks, most_blocks);
  const int last_lanes = static_cast<int>(lanes - (blocks - 1) * vector_lanes);
  const float* xp = x.const_data_ptr<float>();
  const float* gp = go.const_data_ptr<float>();
  float* sp = sums.mutable_data_ptr<float>();
  const int64_t tasks = tap_groups * pixel_tiles.tiles * block_groups.tiles;
  // Sums tiles `tasks` over output rows [row_begin, row_end) (image-major) into `part`,
  // starting it from zero, in chunks of rows (outside) that every tile (inside) sweeps: a
  // sweep per tile would stream the whole input and grad_output once per tile.
  const auto sum_rows = [&](int64_t row_begin, int64_t row_end, int64_t task_begin, int64_t task_end, float* part) {
    for (int64_t row = row_begin; row < row_end;) {
      const int64_t n = row / g.out_h, oh0 = row % g.out_h;
      const int64_t rows = std::min({chunk_rows, g.out_h - oh0, row_end - row});
      const float* init = row == row_begin ? kZeros : nullptr;
      const float* go_rows = gp + row * go_row_floats;
      const float* x_rows = xp + (n * padded_h + oh0 * g.stride_h) * padded_w * c;
      const TileSteps go_pixels{/*pixel=*/1, /*tap_row=*/go_row_floats, /*tap_col=*/0, /*x_step=*/k,
                                /*block=*/vector_lanes, /*w_tap_row=*/x_row_floats, /*w_tap_col=*/0,
                                /*w_step=*/g.stride_w * c, /*out_pixel=*/taps * c, /*kernel_h=*/rows,
                                /*kernel_w=*/1, /*depth=*/g.out_w};
      const TileSteps x_pixels{/*pixel=*/1, /*tap_row=*/x_row_floats, /*tap_col=*/0,
                               /*x_step=*/g.stride_w * c, /*block=*/vector_lanes,
                               /*w_tap_row=*/go_row_floats, /*w_tap_col=*/0, /*w_step=*/k,
                               /*out_pixel=*/k, /*kernel_h=*/rows, /*kernel_w=*/1, /*depth=*/g.out_w};
      for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t block_group = task % block_groups.tiles, tile = task / block_groups.tiles % pixel_tiles.tiles;
        const int64_t group = task / (block_groups.tiles * pixel_tiles.tiles);
        const int64_t p0 = pixel_tiles.start(tile), lane0 = block_groups.start(block_group) * vector_lanes;
        const int tile_pixels = pixel_tiles.size(tile);
        const int nblocks = block_groups.size(block_group);
        const int tile_last_lanes =
            block_group == block_groups.tiles - 1 ? last_lanes : static_cast<int>(vector_lanes);
        const Microkernel kernel = set.at(nblocks, tile_pixels);
        if (taps_as_pixels) {
          // Kernel row `group`; pixel j = s * c + i is tap (group, s), input channel i.
          kernel(x_rows + group * g.dilation_h * padded_w * c + p0, go_rows + lane0, init,
                 part + (group * pixels + p0) * k + lane0, x_pixels, tile_last_lanes);
        } else {
          const int64_t r = group / g.kernel_w, s = group % g.kernel_w;
          kernel(go_rows + p0, x_rows + (r * g.dilation_h * padded_w + s * g.dilation_w) * c + lane0, init,
                 part + (p0 * taps + group) * c + lane0, go_pixels, tile_last_lanes);
        }
      }
      row += rows;
    }
  };
  // Threads split the tiles and each sweeps all rows, or, where a thread's own copy of the
  // sums (written, then read to be added) moves less than the input and grad_output that it
  // would otherwise read whole, split the rows and add their sums at the end. Reading rows
  // another core wrote costs a transfer between caches: MobileNet's 3x224x224 -> 32 3x3/2
  // layer took as long on two threads as on one (its input padded by both, then read whole
  // by each).
  const int64_t sums_floats = taps * c * k, out_rows = g.batch * g.out_h;
  const int64_t parts =
      2 * sums_floats < x.numel() + go.numel() ? std::min<int64_t>(at::get_num_threads(), out_rows) : 1;
  if (parts == 1) {
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) { sum_rows(0, out_rows, begin, end, sp); });
  } else {
    // Part 0 sums in place, the others into a buffer, added to it at the end.
    const at::Tensor partial = scratch(Scratch::kPartialSums, {parts - 1, sums_floats});
    float* pp = partial.mutable_data_ptr<float>();
    at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
      for (int64_t part = begin; part < end; ++part) {
        sum_rows(part * out_rows / parts, (part + 1) * out_rows / parts, 0, tasks,
                 part == 0 ? sp : pp + (part - 1) * sums_floats);
      }
    });
    at::parallel_for(0, sums_floats, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t part = 1; part < parts; ++part) {
        const float* from = pp + (part - 1) * sums_floats;
        for (int64_t i = begin; i < end; ++i) sp[i] += from[i];
      }
    });
  }
  if (!one_tap) unpack_tap_sums(sums, taps_as_pixels, grad_weight);
}

void dense_conv2d_forward_avx2(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& output,
                               const ConvGeometry& g) {
  const int64_t lanes = widest_microkernels().tile.lanes;
  const PackedLayout layout = lanes == kLanes ? PackedLayout::kDenseBlocksOf8 : PackedLayout::kDenseBlocksOf16;
  const at::Tensor packed = cached_pack(weight, layout, [lanes](const at::Tensor& w) {
    const int64_t taps = w.size(2) * w.size(3);
    const std::vector<int64_t> sizes = packed_sizes(w.size(0), w.size(1), w.size(2), w.size(3), lanes);
    at::Tensor packed = new_buffer(c10::multiply_integers(sizes)).view(sizes);
    pack_weight(PlanarWeight{w.const_data_ptr<float>(), w.size(1) * taps, taps, w.size(3), 1}, w.size(0), packed);
    return packed;
  });
  // NCHW input (the NCHW route) is transposed here, row by row, and NCHW output written by
  // forward_dense from rows in L1, rather than both converted by the op layer's copies.
  forward_dense(padded_nhwc(input, g, Scratch::kInput), packed_panel(packed), bias, output, g);
}

}  // namespace classic_ops::cpu
