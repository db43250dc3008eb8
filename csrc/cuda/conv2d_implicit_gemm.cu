// Convolution (groups = 1) as implicit GEMMs on the tensor cores, for channels_last
// tensors. Nothing is materialized: each block gathers its operand tiles straight from the
// tensors, with the zero padding of the convolution written by cp.async's zero fill.
//
//   forward:     Y[m, k]      = sum over (r, s, c) of X[m @ (r, s), c] * W[k, (r, s, c)]
//                (+ bias[k], then ReLU if asked, in the epilogue; where the output tiles are
//                too few to fill the device, the reduction is split over blocks and
//                sum_partials_kernel adds the parts, then the bias and ReLU)
//   grad_weight: dW[k, (r,s,c)] = sum over m of dY[m, k] * X[m @ (r, s), c]
//
// where m runs over output pixels and X[m @ (r, s), c] is the input element that tap (r, s)
// of pixel m reads. (grad_input of a stride-1 convolution is a forward convolution; the
// backend builds it from the forward kernel.)
//
// The pieces, in CUTLASS's terms: tile iteration (a 128 x 128 output tile per block, or
// 256 pixels x 64 channels where there are no more than 64 output channels, stepping
// through the reduction 64 bytes at a time, or 128 on the warpgroup MMA where asked), a
// cp.async pipeline of kStages shared-memory
// stages (pipelined_mainloop), the MMA loop (8 warps, each a 64 x 32 sub-tile of m16n8
// mma.sync tiles with float accumulators, operands loaded by ldmatrix from offsets each
// lane computes once: multiply_stage) and the epilogue (accumulators staged through
// shared memory, then written coalesced: for_each_staged). WMMA, which this replaced,
// loaded bfloat16 and TF32 fragments with 48 generic 32-bit loads a stage instead of 12
// ldmatrix, and recomputed every lane's fragment addresses each stage.
//
// half and bfloat16 multiply exactly into float accumulators; float runs as TF32 (rounded
// to nearest as loaded), which the caller chooses only where
// torch.backends.cudnn.allow_tf32 allows it.
#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "device_math.cuh"
#include "hardware.cuh"
#include "launchers.h"

namespace classic_ops::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kWarpM = 64, kWarpN = 32;  // a warp's sub-tile
constexpr int kBlockThreads = 32 * kWarps;
constexpr int kStages = 3;
constexpr int kChunkBytes = 16;  // one cp.async
constexpr int kTileKBytes = 64;  // reduction step per stage: 32 half or 16 float

// A block's tile as its warps are arranged, kWarpsM along the pixels (M) by
// kWarps / kWarpsM along the channels (N).
template <int kWarpsAlongM>
struct BlockTile {
  static constexpr int kWarpsM = kWarpsAlongM, kWarpsN = kWarps / kWarpsAlongM;
  static constexpr int kM = kWarpsM * kWarpM, kN = kWarpsN * kWarpN;
  static constexpr int kStagingStride = kN + 4;  // floats per epilogue staging row
  static constexpr int kStagingBytes = kM * kStagingStride * 4;
};
using SquareTile = BlockTile<2>;  // 128 x 128
// 256 x 64, for 64 output channels or fewer, of which a square tile would leave half idle.
using TallTile = BlockTile<4>;

// The forward kernel's stage: its A tile ([kM pixels][64 bytes of (r, s, c)]) and its B
// tile ([kN output channels][64 bytes]), each row padded by one chunk.
constexpr int kForwardRowBytes = kTileKBytes + kChunkBytes;
template <class Tile>
constexpr int kForwardStageBytes = (Tile::kM + Tile::kN) * kForwardRowBytes;

// Dynamic shared memory of every kernel here: the largest of the pipelines and the
// epilogue staging areas (grad_weight's pipeline, 2 x 64 bytes x 128 columns per
// stage, is smaller than either).
constexpr int kSharedBytes =
    std::max({SquareTile::kStagingBytes, TallTile::kStagingBytes,
              kStages * kForwardStageBytes<SquareTile>, kStages * kForwardStageBytes<TallTile>});

// In the wider of the two types: 32 bits where both are (the kernels' reduction steps).
template <typename A, typename B>
__host__ __device__ __forceinline__ std::common_type_t<A, B> ceil_div(A a, B b) {
  return (a + b - 1) / b;
}

template <typename T>
constexpr int kVec = kChunkBytes / sizeof(T);
template <typename T>
constexpr int kTileK = kTileKBytes / sizeof(T);

// kStages - 1 tiles in flight ahead of the one being multiplied. Every iteration commits a
// group (empty near the end) so the wait_group counts stay uniform. load_tile(step, stage)
// is called for steps 0, 1, 2, ... in that order (the loaders step cursors along). Ends
// with all copies done and all warps past their last multiply, so the caller may reuse
// shared memory.
template <class LoadTile, class MultiplyStage>
__device__ __forceinline__ void pipelined_mainloop(int k_tiles, LoadTile&& load_tile,
                                                   MultiplyStage&& multiply_stage) {
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < k_tiles) load_tile(t, t);
    cp_async_commit();
  }
  for (int t = 0; t < k_tiles; ++t) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile t is visible to all warps, and stage (t - 1) is free again
    const int ahead = t + kStages - 1;
    if (ahead < k_tiles) load_tile(ahead, ahead % kStages);
    cp_async_commit();
    multiply_stage(t % kStages);
  }
  cp_async_wait<0>();
  __syncthreads();
}

// ---- The MMA loop: ldmatrix and mma.sync ----

// A warp's 64 x 32 block of float sums as m16n8 mma tiles: acc[i][j] holds, of the block,
// rows 16i + g and 16i + g + 8 and columns 8j + 2t and 8j + 2t + 1 (lane = 4g + t), in
// the mma's order (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
constexpr int kTilesM = kWarpM / 16, kTilesN = kWarpN / 8;
using Accumulators = float[kTilesM][kTilesN][4];

// One mma reduces 32 bytes: 16 half or bfloat16 (m16n8k16) or 8 float as TF32 (m16n8k8).
// Either way its operands (mma_m16n8) are, in bytes, the same 16-byte rows of 8x8 blocks,
// which ldmatrix hands out alike.
constexpr int kStepBytes = 32;
constexpr int kStepsPerStage = kTileKBytes / kStepBytes;

// An operand register as the mma takes it: float rounded to TF32, 16-bit pairs as they are.
template <typename T>
__device__ __forceinline__ uint32_t operand(uint32_t bits) {
  if constexpr (std::is_same_v<T, float>) {
    return round_to_tf32(bits);
  } else {
    return bits;
  }
}

// How operand rows lie in shared memory: along the reduction ([m][k] and [n][k], the
// forward's tiles) or along the output ([k][m] and [k][n], grad_weight's).
enum class RowsRun { kAlongReduction, kAlongOutput };

// The byte offsets, from a stage's A and B tiles, of what this lane reads in the first
// step of its warp's first A fragment and first B fragment (see multiply_stage), for
// tiles of rows of kRowBytes. Computed once; a stage adds its tiles' offsets.
struct LaneOffsets {
  int a, b;
};

template <typename T, RowsRun kRows, int kRowBytes>
__device__ __forceinline__ LaneOffsets lane_offsets(int warp_m, int warp_n) {
  const int lane = threadIdx.x % 32;
  if constexpr (kRows == RowsRun::kAlongReduction) {
    // A block q of ldmatrix: rows 8 (q % 2) on, bytes 16 (q / 2) on, so that q is the A
    // register of the mma; B: rows 8 (q / 2) on, bytes 16 (q % 2) on, two n8 tiles.
    return {(warp_m * kWarpM + lane % 16) * kRowBytes + lane / 16 * 16,
            (warp_n * kWarpN + lane % 8 + lane / 16 * 8) * kRowBytes + lane / 8 % 2 * 16};
  } else if constexpr (sizeof(T) == 2) {
    // The same blocks read transposed: A block q from reduction row 8 (q / 2) and column
    // 8 (q % 2), B block q from reduction row 8 (q % 2) and column 8 (q / 2).
    return {(lane % 8 + lane / 16 * 8) * kRowBytes + (warp_m * kWarpM + lane / 8 % 2 * 8) * 2,
            (lane % 8 + lane / 8 % 2 * 8) * kRowBytes + (warp_n * kWarpN + lane / 16 * 8) * 2};
  } else {
    // 32-bit elements cannot be read transposed: each lane reads its own, A (g, t) and B
    // (t, g) first.
    return {lane % 4 * kRowBytes + (warp_m * kWarpM + lane / 4) * 4,
            lane % 4 * kRowBytes + (warp_n * kWarpN + lane / 4) * 4};
  }
}

// One warp's share of a stage: its 64 x 32 block over the stage's 64 bytes of reduction.
// a_at and b_at: byte offsets from `shared` of the stage's A and B tiles plus the lane's
// LaneOffsets.
template <typename T, RowsRun kRows, int kRowBytes>
__device__ __forceinline__ void multiply_stage(Accumulators& acc, const unsigned char* shared,
                                               int a_at, int b_at) {
  const unsigned base = shared_address(shared);
  auto word = [&](int offset) { return *reinterpret_cast<const uint32_t*>(shared + offset); };
#pragma unroll
  for (int step = 0; step < kStepsPerStage; ++step) {
    uint32_t a[kTilesM][4], b[kTilesN][2];
    if constexpr (kRows == RowsRun::kAlongReduction || sizeof(T) == 2) {
      constexpr bool kTransposed = kRows == RowsRun::kAlongOutput;
      // Fragment i lies 16 rows (16 columns, transposed) past fragment 0; a step, 32 bytes
      // (16 rows) on.
      constexpr int kNextTile = kTransposed ? 16 * 2 : 16 * kRowBytes;
      const int step_offset = kTransposed ? step * 16 * kRowBytes : step * kStepBytes;
#pragma unroll
      for (int i = 0; i < kTilesM; ++i)
        ldmatrix_x4<kTransposed>(a[i], base + a_at + i * kNextTile + step_offset);
#pragma unroll
      for (int j = 0; j < kTilesN; j += 2) {
        uint32_t r[4];
        ldmatrix_x4<kTransposed>(r, base + b_at + j / 2 * kNextTile + step_offset);
        b[j][0] = r[0];
        b[j][1] = r[1];
        b[j + 1][0] = r[2];
        b[j + 1][1] = r[3];
      }
    } else {
      const int step_offset = step * 8 * kRowBytes;
#pragma unroll
      for (int i = 0; i < kTilesM; ++i) {
        const int p = a_at + i * 16 * 4 + step_offset;
        a[i][0] = word(p);
        a[i][1] = word(p + 8 * 4);
        a[i][2] = word(p + 4 * kRowBytes);
        a[i][3] = word(p + 4 * kRowBytes + 8 * 4);
      }
#pragma unroll
      for (int j = 0; j < kTilesN; ++j) {
        const int p = b_at + j * 8 * 4 + step_offset;
        b[j][0] = word(p);
        b[j][1] = word(p + 4 * kRowBytes);
      }
    }
#pragma unroll
    for (int i = 0; i < kTilesM; ++i)
#pragma unroll
      for (int r = 0; r < 4; ++r) a[i][r] = operand<T>(a[i][r]);
#pragma unroll
    for (int j = 0; j < kTilesN; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r) b[j][r] = operand<T>(b[j][r]);
#pragma unroll
    for (int i = 0; i < kTilesM; ++i)
#pragma unroll
      for (int j = 0; j < kTilesN; ++j) mma_m16n8<T>(acc[i][j], a[i], b[j]);
  }
}

// Warp w's place in the tile: (w % kWarpsM, w / kWarpsM).
template <class Tile>
__device__ __forceinline__ int warp_m() {
  return threadIdx.x / 32 % Tile::kWarpsM;
}
template <class Tile>
__device__ __forceinline__ int warp_n() {
  return threadIdx.x / 32 / Tile::kWarpsM;
}

// The epilogue: the MMA loop parks its accumulators in shared memory (stage_accumulators,
// or stage_warpgroup_accumulators), then the block walks the tile row by row in groups of
// four columns, consecutive threads on consecutive groups, and hands each group to
// store(row, col, values) (columns col to col + 3): a quarter of the iterations of a value
// at a time, which on a short reduction (a 1x1 convolution of 64 channels is two pipeline
// steps) took longer than the multiplies.
template <class Tile>
__device__ __forceinline__ void stage_accumulators(const Accumulators& acc, float* staging) {
  constexpr int kStride = Tile::kStagingStride;
  const int lane = threadIdx.x % 32;
  const int row0 = warp_m<Tile>() * kWarpM + lane / 4;
  const int col0 = warp_n<Tile>() * kWarpN + lane % 4 * 2;
#pragma unroll
  for (int i = 0; i < kTilesM; ++i) {
#pragma unroll
    for (int j = 0; j < kTilesN; ++j) {
      float* at = staging + (row0 + 16 * i) * kStride + col0 + 8 * j;
      *reinterpret_cast<float2*>(at) = make_float2(acc[i][j][0], acc[i][j][1]);
      *reinterpret_cast<float2*>(at + 8 * kStride) = make_float2(acc[i][j][2], acc[i][j][3]);
    }
  }
}

// The same for the warpgroup MMA's 64 x 128 accumulator tiles (wgmma_m64n128's layout), of
// which warpgroup w holds rows 64w to 64w + 63.
template <class Tile>
__device__ __forceinline__ void stage_warpgroup_accumulators(const float (&acc)[64],
                                                             float* staging) {
  constexpr int kStride = Tile::kStagingStride;
  const int lane = threadIdx.x % 32;
  const int row0 = threadIdx.x / 128 * 64 + threadIdx.x / 32 % 4 * 16 + lane / 4;
  const int col0 = lane % 4 * 2;
#pragma unroll
  for (int j = 0; j < Tile::kN / 8; ++j) {
    float* at = staging + row0 * kStride + col0 + 8 * j;
    *reinterpret_cast<float2*>(at) = make_float2(acc[4 * j], acc[4 * j + 1]);
    *reinterpret_cast<float2*>(at + 8 * kStride) = make_float2(acc[4 * j + 2], acc[4 * j + 3]);
  }
}

template <class Tile, class Store>
__device__ __forceinline__ void for_each_staged(const float* staging, Store&& store) {
  constexpr int kStride = Tile::kStagingStride;
  __syncthreads();
  constexpr int kGroupsPerRow = Tile::kN / 4;
  for (int e = threadIdx.x; e < Tile::kM * kGroupsPerRow; e += kBlockThreads) {
    const int row = e / kGroupsPerRow, col = e % kGroupsPerRow * 4;
    const float4 v = *reinterpret_cast<const float4*>(staging + row * kStride + col);
    float values[4] = {v.x, v.y, v.z, v.w};
    store(row, col, values);
  }
}

// Whether rows of `row_length` elements from `base` keep every group of four that starts
// at a multiple of four aligned for one vector store.
template <typename T>
__device__ __forceinline__ bool groups_aligned(const T* base, int64_t row_length) {
  return row_length % 4 == 0 && reinterpret_cast<uintptr_t>(base) % sizeof(Vector<T, 4>) == 0;
}

// Writes the first `count` (at most 4) of values to out[0..count): one vector store where
// all four go and `aligned` holds.
template <typename T>
__device__ __forceinline__ void store_group(T* out, const float (&values)[4], int count,
                                            bool aligned) {
  if (aligned && count == 4) {
    Vector<T, 4> packed;
#pragma unroll
    for (int j = 0; j < 4; ++j) packed.v[j] = from_acc<T>(values[j]);
    *reinterpret_cast<Vector<T, 4>*>(out) = packed;
    return;
  }
  for (int j = 0; j < count; ++j) out[j] = from_acc<T>(values[j]);
}

// A number written in mixed radix, (high, mid, low) with low < low_radix and
// mid < mid_radix, stepped forward by additions: the loaders walk reduction columns
// (r, s, c) and pixels (n, oh, ow) this way, each a step of the pipeline apart, where
// dividing anew each step cost as many instructions as the step's copies.
struct MixedRadixCursor {
  int high, mid, low;
  MixedRadixCursor() = default;
  __device__ __forceinline__ MixedRadixCursor(int value, int low_radix, int mid_radix) {
    const int rest = value / low_radix;
    low = value - rest * low_radix;
    high = rest / mid_radix;
    mid = rest - high * mid_radix;
  }
  __device__ __forceinline__ void advance(int by, int low_radix, int mid_radix) {
    low += by;
    while (low >= low_radix) {
      low -= low_radix;
      if (++mid == mid_radix) {
        mid = 0;
        ++high;
      }
    }
  }
};

// Reduction columns col = (r * kernel_w + s) * in_channels + c.
__device__ __forceinline__ MixedRadixCursor tap_cursor(int col, const ConvGeometry& g) {
  return {col, static_cast<int>(g.in_channels), static_cast<int>(g.kernel_w)};
}
__device__ __forceinline__ void advance_tap(MixedRadixCursor& tap, int columns,
                                            const ConvGeometry& g) {
  tap.advance(columns, static_cast<int>(g.in_channels), static_cast<int>(g.kernel_w));
}

// Output pixels m = (n * out_h + oh) * out_w + ow (implicit_gemm_fits keeps them under
// 2^31).
__device__ __forceinline__ MixedRadixCursor pixel_cursor(int64_t m, const ConvGeometry& g) {
  return {static_cast<int>(m), static_cast<int>(g.out_w), static_cast<int>(g.out_h)};
}
__device__ __forceinline__ void advance_pixel(MixedRadixCursor& pixel, int pixels,
                                              const ConvGeometry& g) {
  pixel.advance(pixels, static_cast<int>(g.out_w), static_cast<int>(g.out_h));
}

// An output pixel's window: the input position of its top-left tap and that position's
// element offset in the input (channel 0; outside the image where the window starts in
// the padding). A pixel past the last gets a row no tap reaches.
struct PixelWindow {
  int64_t origin;
  int ih0, iw0;
};

constexpr int kNoRow = -(1 << 30);

__device__ __forceinline__ PixelWindow window_of(const MixedRadixCursor& pixel, bool valid,
                                                 const ConvGeometry& g) {
  const int ih0 = pixel.mid * static_cast<int>(g.stride_h) - static_cast<int>(g.pad_h);
  const int iw0 = pixel.low * static_cast<int>(g.stride_w) - static_cast<int>(g.pad_w);
  return {((pixel.high * g.in_h + ih0) * g.in_w + iw0) * g.in_channels, valid ? ih0 : kNoRow,
          iw0};
}

// A reduction column's tap (r, s, c) as a displacement from a window's top-left tap: in
// rows and columns, and in elements.
struct TapOffset {
  int dh, dw;
  int64_t elements;
};

__device__ __forceinline__ TapOffset tap_offset(const MixedRadixCursor& tap,
                                                const ConvGeometry& g) {
  const int dh = tap.high * static_cast<int>(g.dilation_h);
  const int dw = tap.mid * static_cast<int>(g.dilation_w);
  return {dh, dw, (dh * g.in_w + dw) * g.in_channels + tap.low};
}

// The input element that tap `tap` of window `window` reads, or null in the zero padding
// or for a pixel past the last. The bounds are 32-bit (implicit_gemm_fits keeps positions,
// padding and window extents under 2^29), and the address is one addition to offsets made
// once a pixel and once a step.
template <typename T>
__device__ __forceinline__ const char* input_at(const T* input, const PixelWindow& window,
                                                const TapOffset& tap, int in_h, int in_w) {
  const bool inside = static_cast<unsigned>(window.ih0 + tap.dh) < static_cast<unsigned>(in_h) &&
                      static_cast<unsigned>(window.iw0 + tap.dw) < static_cast<unsigned>(in_w);
  return inside ? reinterpret_cast<const char*>(input + (window.origin + tap.elements)) : nullptr;
}

// How a stage's rows of reduction lie in shared memory: kReductionBytes of reduction per
// row (a pipeline step), offset(row, chunk) of the row's 16-byte chunk. The warp MMA's rows of
// 64 bytes are padded by one chunk, so the 8 rows of an ldmatrix fall in different banks;
// the warpgroup MMA reads its rows unpadded, chunks permuted by the swizzle of the row's
// width (64 or 128 bytes: the chunk index XORed with address bits 7 on), equally
// conflict-free, and described to the tensor cores by descriptor().
struct PaddedRows {
  static constexpr int kReductionBytes = kTileKBytes;
  static constexpr int kRowBytes = kForwardRowBytes;
  __device__ __forceinline__ static int offset(int row, int chunk) {
    return row * kRowBytes + chunk * kChunkBytes;
  }
};
template <int kBytes>
struct SwizzledRows {
  static_assert(kBytes == 64 || kBytes == 128);
  static constexpr int kReductionBytes = kBytes, kRowBytes = kBytes;
  __device__ __forceinline__ static int offset(int row, int chunk) {
    return row * kRowBytes +
           (chunk ^ (row * kRowBytes >> 7 & (kRowBytes / kChunkBytes - 1))) * kChunkBytes;
  }
  // A tile's shared-memory matrix descriptor for the warpgroup MMA (the PTX ISA's format):
  // its start address, rows along the reduction (K-major) in this order with the tile
  // aligned to 8 rows, 8-row groups 8 rows apart, the swizzle (mode 2: 64 bytes, 1: 128).
  // Adding 2 moves it 32 bytes along the rows, to the next 16 elements of 16 bits.
  __device__ __forceinline__ static uint64_t descriptor(const void* tile) {
    constexpr uint64_t kUnusedLeadingOffset = 1, kGroupStride = 8 * kRowBytes >> 4;
    constexpr uint64_t kSwizzleMode = kBytes == 64 ? 2 : 1;
    return uint64_t{(shared_address(tile) >> 4) & 0x3FFF} | kUnusedLeadingOffset << 16 |
           kGroupStride << 32 | kSwizzleMode << 62;
  }
};

// The forward's tile loader: the A tile ([kM pixels][Rows::kReductionBytes of (r, s, c)]) and
// the B tile ([kN output channels][the same]) of reduction step first_step + k_tile, for
// steps 0, 1, 2, ... in turn. Each thread copies chunk column `chunk` of rows
// first_row + i * kRowsPerPass of both tiles.
template <typename T, class Tile, class Rows>
struct ForwardLoader {
  static constexpr int kStep = Rows::kReductionBytes / sizeof(T);  // elements of a step
  static constexpr int kChunksPerRow = Rows::kReductionBytes / kChunkBytes;
  static constexpr int kRowsPerPass = kBlockThreads / kChunksPerRow;
  static constexpr int kPassesA = Tile::kM / kRowsPerPass, kPassesB = Tile::kN / kRowsPerPass;
  static_assert(Tile::kM % kRowsPerPass == 0 && Tile::kN % kRowsPerPass == 0);

  const T* input;
  const T* weight;
  const ConvGeometry& g;
  int chunk, first_row, in_h, in_w, out_channels, reduction, n0, first_step;
  PixelWindow window[kPassesA];
  MixedRadixCursor tap;

  __device__ __forceinline__ ForwardLoader(const T* input_, const T* weight_,
                                           const ConvGeometry& g_, int64_t m0, int n0_,
                                           int first_step_)
      : input(input_),
        weight(weight_),
        g(g_),
        chunk(threadIdx.x % kChunksPerRow),
        first_row(threadIdx.x / kChunksPerRow),
        in_h(static_cast<int>(g_.in_h)),
        in_w(static_cast<int>(g_.in_w)),
        out_channels(static_cast<int>(g_.out_channels)),
        reduction(static_cast<int>(g_.kernel_h * g_.kernel_w * g_.in_channels)),
        n0(n0_),
        first_step(first_step_) {
    const int64_t m_total = g.batch * g.out_h * g.out_w;
#pragma unroll
    for (int i = 0; i < kPassesA; ++i) {
      const int64_t m = m0 + first_row + i * kRowsPerPass;
      window[i] = window_of(pixel_cursor(m < m_total ? m : 0, g), m < m_total, g);
    }
    // in_channels is a multiple of kVec, so a chunk never straddles two taps.
    tap = tap_cursor(first_step * kStep + chunk * kVec<T>, g);
  }

  __device__ __forceinline__ void load(int k_tile, unsigned char* a, unsigned char* b) {
    const int col = (first_step + k_tile) * kStep + chunk * kVec<T>;
    const bool col_valid = col < reduction;
    const TapOffset offset = tap_offset(tap, g);
#pragma unroll
    for (int i = 0; i < kPassesA; ++i) {
      const int row = first_row + i * kRowsPerPass;
      const char* src = col_valid ? input_at(input, window[i], offset, in_h, in_w) : nullptr;
      cp_async_16(a + Rows::offset(row, chunk), src ? src : reinterpret_cast<const char*>(input),
                  src != nullptr);
    }
#pragma unroll
    for (int i = 0; i < kPassesB; ++i) {
      const int row = first_row + i * kRowsPerPass;
      const bool valid = col_valid && n0 + row < out_channels;
      cp_async_16(b + Rows::offset(row, chunk),
                  valid ? weight + int64_t{n0 + row} * reduction + col : weight, valid);
    }
    advance_tap(tap, kStep, g);
  }
};

// The forward's epilogue for a group of four sums at (row, col) of block (m0, n0): its
// float sums to slice blockIdx.z of partials where the reduction is split, else + bias and
// ReLU as asked, to the output pixel's place in `pixels`.
template <typename T>
struct ForwardStore {
  T* output;
  PixelLayout pixels;
  const T* bias;
  float* partials;
  bool relu, aligned;
  int64_t m_total, m0;
  int out_channels, n0;

  __device__ __forceinline__ ForwardStore(T* output_, const PixelLayout& pixels_, const T* bias_,
                                          float* partials_, bool relu_, const ConvGeometry& g,
                                          int64_t m0_, int n0_)
      : output(output_),
        pixels(pixels_),
        bias(bias_),
        partials(partials_),
        relu(relu_),
        m_total(g.batch * g.out_h * g.out_w),
        m0(m0_),
        out_channels(static_cast<int>(g.out_channels)),
        n0(n0_) {
    // Every pixel's start a multiple of four elements where the output's rows are.
    const bool starts_aligned = pixels.dense || (pixels.image % 4 == 0 &&
                                                 pixels.row % 4 == 0 &&
                                                 pixels.column % 4 == 0);
    aligned = partials != nullptr ? groups_aligned(partials, out_channels)
                                  : groups_aligned(output, out_channels) && starts_aligned;
  }

  __device__ __forceinline__ void operator()(int row, int col, float (&values)[4]) const {
    const int64_t m = m0 + row;
    const int k = n0 + col;
    if (m >= m_total || k >= out_channels) return;
    const int count = min(4, out_channels - k);
    if (partials != nullptr) {
      store_group(partials + (blockIdx.z * m_total + m) * out_channels + k, values, count, aligned);
      return;
    }
    for (int j = 0; j < count; ++j) values[j] = with_bias_and_relu(values[j], bias, k + j, relu);
    store_group(output + pixels.start(m) + k, values, count, aligned);
  }
};

// The reduction steps (of kReductionBytes) of block z: from z * steps_per_split on,
// steps_per_split of them or what remains (none, for a split past the end).
template <typename T, int kReductionBytes>
__device__ __forceinline__ int steps_of_split(const ConvGeometry& g, int steps_per_split) {
  const int reduction = static_cast<int>(g.kernel_h * g.kernel_w * g.in_channels);
  const int first_step = blockIdx.z * steps_per_split;
  return min(steps_per_split,
             ceil_div(reduction, kReductionBytes / static_cast<int>(sizeof(T))) - first_step);
}

// Forward on the warp MMA (mma.sync), any tile. Shared memory per stage: the A tile, then
// the B tile, in padded rows. Block z takes reduction steps from z * steps_per_split on;
// with partials, it writes its float sums to slice z of them instead of the output.
template <typename T, class Tile>
__global__ void __launch_bounds__(kBlockThreads, 2)
    forward_kernel(const T* __restrict__ input, const T* __restrict__ weight,
                   const T* __restrict__ bias, T* __restrict__ output, PixelLayout output_pixels,
                   ConvGeometry g, bool relu, float* __restrict__ partials, int steps_per_split) {
  constexpr int kRowBytes = PaddedRows::kRowBytes;
  constexpr int kStageBytes = kForwardStageBytes<Tile>;
  static_assert(kStages * kStageBytes <= kSharedBytes && Tile::kStagingBytes <= kSharedBytes);

  unsigned char* const shared = dynamic_shared_memory();
  const int64_t m0 = int64_t{blockIdx.x} * Tile::kM;
  const int n0 = blockIdx.y * Tile::kN;
  ForwardLoader<T, Tile, PaddedRows> loader(input, weight, g, m0, n0, blockIdx.z * steps_per_split);
  auto load_tile = [&](int k_tile, int stage) {
    unsigned char* a = shared + stage * kStageBytes;
    loader.load(k_tile, a, a + Tile::kM * kRowBytes);
  };

  constexpr RowsRun kRows = RowsRun::kAlongReduction;
  const LaneOffsets lane = lane_offsets<T, kRows, kRowBytes>(warp_m<Tile>(), warp_n<Tile>());
  Accumulators acc = {};
  pipelined_mainloop(steps_of_split<T, PaddedRows::kReductionBytes>(g, steps_per_split), load_tile,
                     [&](int stage) {
                       multiply_stage<T, kRows, kRowBytes>(
                           acc, shared, stage * kStageBytes + lane.a,
                           stage * kStageBytes + Tile::kM * kRowBytes + lane.b);
                     });

  float* staging = reinterpret_cast<float*>(shared);
  stage_accumulators<Tile>(acc, staging);
  for_each_staged<Tile>(
      staging, ForwardStore<T>(output, output_pixels, bias, partials, relu, g, m0, n0));
}

// Forward on Hopper's warpgroup MMA (wgmma, sm_90a; float as TF32), for 128 x 128 tiles:
// the same loaders and epilogue as forward_kernel, the two warpgroups each a 64 x 128 half
// of the tile. Its stages' tiles are read by the tensor cores' own loads (the async proxy),
// so each thread fences its copies before the barrier, and a stage is loaded again only
// once the warpgroup MMAs reading it have completed: kAhead = kWarpgroupStages - 2 steps are
// in flight, while one group of MMAs may still run.
//
// Rows: SwizzledRows<64> (2 MMAs per warpgroup a step, 16 KB stages, two blocks per
// multiprocessor) or SwizzledRows<128> (4 MMAs a step around the same barrier, wait and
// loader bookkeeping; 32 KB stages, one block per multiprocessor). In the sm_90a SASS a
// step's loop is 156 instructions for 2 MMAs, 235 for 4: at 64 bytes the instructions
// likely outlast the tensor cores' work, at 128 likely not (to be measured on a GPU).
constexpr int kWarpgroupStages = 4;
template <class Rows>
constexpr int kWarpgroupStageBytes = (SquareTile::kM + SquareTile::kN) * Rows::kRowBytes;
template <class Rows>
constexpr int kWarpgroupSharedBytes =
    std::max(kWarpgroupStages * kWarpgroupStageBytes<Rows>, SquareTile::kStagingBytes);

template <typename T, class Rows>
__global__ void __launch_bounds__(kBlockThreads, Rows::kRowBytes == 64 ? 2 : 1)
    warpgroup_forward_kernel(const T* __restrict__ input, const T* __restrict__ weight,
                             const T* __restrict__ bias, T* __restrict__ output,
                             PixelLayout output_pixels, ConvGeometry g, bool relu,
                             float* __restrict__ partials, int steps_per_split) {
  using Tile = SquareTile;
  constexpr int kAhead = kWarpgroupStages - 2;
  constexpr int kStageBytes = kWarpgroupStageBytes<Rows>;
  constexpr int kBOffset = Tile::kM * Rows::kRowBytes;
  constexpr int kWarpgroupRows = 64;
  static_assert(kStageBytes % (8 * Rows::kRowBytes) == 0 && kBOffset % (8 * Rows::kRowBytes) == 0);

  unsigned char* const shared = dynamic_shared_memory();
  const int64_t m0 = int64_t{blockIdx.x} * Tile::kM;
  const int n0 = blockIdx.y * Tile::kN;
  ForwardLoader<T, Tile, Rows> loader(input, weight, g, m0, n0, blockIdx.z * steps_per_split);
  auto stage = [&](int step) { return shared + step % kWarpgroupStages * kStageBytes; };
  const int steps = steps_of_split<T, Rows::kReductionBytes>(g, steps_per_split);
  const int warpgroup = threadIdx.x / 128;

  float acc[64] = {};
#pragma unroll
  for (int t = 0; t < kAhead; ++t) {
    if (t < steps) loader.load(t, stage(t), stage(t) + kBOffset);
    cp_async_commit();
  }
  for (int t = 0; t < steps; ++t) {
    cp_async_wait<kAhead - 1>();
    fence_proxy_async();
    __syncthreads();  // step t is in shared memory, and step t - 2's MMAs have completed
    if (t + kAhead < steps)
      loader.load(t + kAhead, stage(t + kAhead), stage(t + kAhead) + kBOffset);
    cp_async_commit();
    const uint64_t a = Rows::descriptor(stage(t) + warpgroup * kWarpgroupRows * Rows::kRowBytes);
    const uint64_t b = Rows::descriptor(stage(t) + kBOffset);
    wgmma_fence();
#pragma unroll
    for (int step = 0; step < Rows::kReductionBytes / kStepBytes; ++step) {
      wgmma_m64n128<T>(acc, a + 2 * step, b + 2 * step);
    }
    wgmma_commit();
    wgmma_wait<1>(acc);
  }
  wgmma_wait<0>(acc);
  cp_async_wait<0>();
  __syncthreads();

  float* staging = reinterpret_cast<float*>(shared);
  stage_warpgroup_accumulators<Tile>(acc, staging);
  for_each_staged<Tile>(
      staging, ForwardStore<T>(output, output_pixels, bias, partials, relu, g, m0, n0));
}

// grad_weight, split over the pixels: block (x, y, z) computes the 128 x 128 tile (y, x)
// of dW over the z-th slice of the pixels, into float partial sums that
// sum_partials_kernel adds up in a fixed order (deterministic). Shared memory per stage:
// the A tile as [64 bytes of pixels][128 output channels] and the B tile as
// [64 bytes of pixels][128 (r, s, c) columns], rows padded by one chunk.
template <typename T>
__global__ void __launch_bounds__(kBlockThreads, 2)
    grad_weight_kernel(const T* __restrict__ grad_output, const T* __restrict__ input,
                       float* __restrict__ partials, ConvGeometry g, int64_t pixels_per_split) {
  using Tile = SquareTile;  // rows of A and of B alike hold 128 columns
  constexpr int kRowBytes = Tile::kN * sizeof(T) + kChunkBytes;
  constexpr int kRowElems = kRowBytes / sizeof(T);
  constexpr int kChunksPerRow = Tile::kN * sizeof(T) / kChunkBytes;
  constexpr int kRowsPerPass = kBlockThreads / kChunksPerRow;
  constexpr int kPasses = kTileK<T> / kRowsPerPass;
  constexpr int kStageBytes = 2 * kTileK<T> * kRowBytes;
  static_assert(kStages * kStageBytes <= kSharedBytes && Tile::kM == Tile::kN);

  unsigned char* const shared = dynamic_shared_memory();
  const int64_t m_total = g.batch * g.out_h * g.out_w;
  const int out_channels = static_cast<int>(g.out_channels);
  const int reduction = static_cast<int>(g.kernel_h * g.kernel_w * g.in_channels);
  const int n0 = blockIdx.x * Tile::kN;  // dW columns (r, s, c)
  const int k0 = blockIdx.y * Tile::kM;  // dW rows: output channels
  const int64_t m_begin = blockIdx.z * pixels_per_split;
  const int64_t m_end = min(m_begin + pixels_per_split, m_total);

  const int chunk = threadIdx.x % kChunksPerRow;
  const int first_row = threadIdx.x / kChunksPerRow;
  const int k_col = k0 + chunk * kVec<T>;
  const bool k_valid = k_col < out_channels;
  const int rsc_col = n0 + chunk * kVec<T>;
  const bool rsc_valid = rsc_col < reduction;
  const TapOffset offset = tap_offset(tap_cursor(rsc_valid ? rsc_col : 0, g), g);
  const int in_h = static_cast<int>(g.in_h), in_w = static_cast<int>(g.in_w);
  // Row first_row + i * kRowsPerPass of every step's tiles: pixel m_begin + that row at step
  // 0, kTileK pixels further each step.
  MixedRadixCursor pixel[kPasses] = {};
#pragma unroll
  for (int i = 0; i < kPasses; ++i) {
    pixel[i] = pixel_cursor(m_begin + first_row + i * kRowsPerPass, g);
  }

  auto stage_a = [&](int stage) { return reinterpret_cast<T*>(shared + stage * kStageBytes); };
  auto stage_b = [&](int stage) {
    return reinterpret_cast<T*>(shared + stage * kStageBytes + kTileK<T> * kRowBytes);
  };

  auto load_tile = [&](int k_tile, int stage) {
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int row = first_row + i * kRowsPerPass;
      const int64_t m = m_begin + int64_t{k_tile} * kTileK<T> + row;
      const bool m_valid = m < m_end;
      const bool a_valid = m_valid && k_valid;
      cp_async_16(stage_a(stage) + row * kRowElems + chunk * kVec<T>,
                  a_valid ? grad_output + m * out_channels + k_col : grad_output, a_valid);
      const char* src =
          rsc_valid ? input_at(input, window_of(pixel[i], m_valid, g), offset, in_h, in_w)
                    : nullptr;
      cp_async_16(stage_b(stage) + row * kRowElems + chunk * kVec<T>,
                  src ? src : reinterpret_cast<const char*>(input), src != nullptr);
      advance_pixel(pixel[i], kTileK<T>, g);
    }
  };

  constexpr RowsRun kRows = RowsRun::kAlongOutput;
  const LaneOffsets lane = lane_offsets<T, kRows, kRowBytes>(warp_m<Tile>(), warp_n<Tile>());
  Accumulators acc = {};
  const int64_t pixels = m_end > m_begin ? m_end - m_begin : 0;
  pipelined_mainloop(static_cast<int>(ceil_div(pixels, kTileK<T>)), load_tile,
                     [&](int stage) {
                       multiply_stage<T, kRows, kRowBytes>(
                           acc, shared, stage * kStageBytes + lane.a,
                           stage * kStageBytes + kTileK<T> * kRowBytes + lane.b);
                     });

  float* out = partials + int64_t{blockIdx.z} * out_channels * reduction;
  const bool aligned = groups_aligned(out, reduction);
  float* staging = reinterpret_cast<float*>(shared);
  stage_accumulators<Tile>(acc, staging);
  for_each_staged<Tile>(staging, [&](int row, int col, float(&values)[4]) {
    const int k = k0 + row, rsc = n0 + col;
    if (k < out_channels && rsc < reduction) {
      store_group(out + int64_t{k} * reduction + rsc, values, min(4, reduction - rsc), aligned);
    }
  });
}

// More than 48 KB of dynamic shared memory has to be asked for, once per kernel and device.
template <typename Kernel>
cudaError_t allow_shared_bytes(Kernel kernel, int bytes, bool (&done)[64]) {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess || (device < 64 && done[device])) return err;
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (err == cudaSuccess && device < 64) done[device] = true;
  return err;
}

// How many ways to split `steps` pipeline steps, over `tiles` output tiles, so that the
// blocks fill a device of `multiprocessors` (two blocks each: __launch_bounds__ holds the
// kernels to the registers for two, and there is no room for a third), each split still
// at least 8 steps deep.
int splits_to_fill(int64_t tiles, int64_t steps, int multiprocessors) {
  const int64_t wanted = 2 * int64_t{multiprocessors} / tiles;
  return static_cast<int>(std::max<int64_t>(1, std::min({wanted, steps / 8, int64_t{65535}})));
}

// The forward's tile for a geometry; both sides of the launch agree on it through this.
bool forward_tile_is_tall(const ConvGeometry& g) { return g.out_channels <= TallTile::kN; }

template <class Tile>
int64_t forward_tiles(const ConvGeometry& g) {
  return ceil_div(g.batch * g.out_h * g.out_w, Tile::kM) * ceil_div(g.out_channels, Tile::kN);
}

// kKernel: forward_kernel<T, Tile> (steps of 64 bytes, kSharedBytes) or, for SquareTile,
// warpgroup_forward_kernel<T, Rows> (steps and shared memory of its Rows).
template <typename T, class Tile, auto kKernel, int kReductionBytes = kTileKBytes,
          int kKernelSharedBytes = kSharedBytes>
cudaError_t launch_forward(const T* input, const T* weight_krsc, const T* bias, T* output,
                           const Strides4& output_strides, const ConvGeometry& g, bool relu,
                           float* partials, int splits, cudaStream_t stream) {
  static bool attribute_set[64] = {};
  const cudaError_t err = allow_shared_bytes(kKernel, kKernelSharedBytes, attribute_set);
  if (err != cudaSuccess) return err;
  const int64_t m_total = g.batch * g.out_h * g.out_w;
  const int64_t steps = ceil_div(g.kernel_h * g.kernel_w * g.in_channels,
                                 kReductionBytes / static_cast<int>(sizeof(T)));
  const PixelLayout layout = PixelLayout::pixels(output_strides, g.out_channels, g.out_h, g.out_w);
  const dim3 grid(static_cast<unsigned int>(ceil_div(m_total, Tile::kM)),
                  static_cast<unsigned int>(ceil_div(g.out_channels, Tile::kN)), splits);
  launch_kernel(kKernel, grid, kBlockThreads, kKernelSharedBytes, stream, input, weight_krsc, bias,
                output, layout, g, relu, splits > 1 ? partials : nullptr,
                static_cast<int>(ceil_div(steps, splits)));
  if (splits > 1) {
    const int64_t size = m_total * g.out_channels;
    launch_kernel(sum_partials_kernel<T>, blocks_for(size), kThreads, 0, stream, partials, splits,
                  size, bias, relu, output, layout);
  }
  return cudaGetLastError();
}

}  // namespace

int implicit_gemm_forward_splits(const ConvGeometry& g, int element_bytes, int multiprocessors) {
  return splits_to_fill(
      forward_tile_is_tall(g) ? forward_tiles<TallTile>(g) : forward_tiles<SquareTile>(g),
      ceil_div(g.kernel_h * g.kernel_w * g.in_channels * element_bytes, kTileKBytes),
      multiprocessors);
}

bool implicit_gemm_warpgroup_fits(const ConvGeometry& g) {
  return !forward_tile_is_tall(g);
}

template <typename T, int kRowBytes>
cudaError_t launch_warpgroup_forward(const T* input, const T* weight_krsc, const T* bias, T* output,
                                     const Strides4& output_strides, const ConvGeometry& g,
                                     bool relu, float* partials, int splits, cudaStream_t stream) {
  using Rows = SwizzledRows<kRowBytes>;
  return launch_forward<T, SquareTile, warpgroup_forward_kernel<T, Rows>, Rows::kReductionBytes,
                        kWarpgroupSharedBytes<Rows>>(input, weight_krsc, bias, output,
                                                     output_strides, g, relu, partials, splits,
                                                     stream);
}

template <typename T>
cudaError_t conv2d_forward_implicit_gemm(const T* input, const T* weight_krsc, const T* bias,
                                         T* output, const Strides4& output_strides,
                                         const ConvGeometry& g, bool relu, float* partials,
                                         int splits, int warpgroup_row_bytes, cudaStream_t stream) {
  if (warpgroup_row_bytes == 64 || warpgroup_row_bytes == 128) {
    return (warpgroup_row_bytes == 64 ? launch_warpgroup_forward<T, 64>
                                      : launch_warpgroup_forward<T, 128>)(
        input, weight_krsc, bias, output, output_strides, g, relu, partials, splits, stream);
  }
  return (forward_tile_is_tall(g) ? launch_forward<T, TallTile, forward_kernel<T, TallTile>>
                                  : launch_forward<T, SquareTile, forward_kernel<T, SquareTile>>)(
      input, weight_krsc, bias, output, output_strides, g, relu, partials, splits, stream);
}

int implicit_gemm_grad_weight_splits(const ConvGeometry& g, int element_bytes,
                                     int multiprocessors) {
  const int64_t tiles = ceil_div(g.out_channels, SquareTile::kM) *
                        ceil_div(g.kernel_h * g.kernel_w * g.in_channels, SquareTile::kN);
  return splits_to_fill(tiles, ceil_div(g.batch * g.out_h * g.out_w * element_bytes, kTileKBytes),
                        multiprocessors);
}

template <typename T>
cudaError_t conv2d_grad_weight_implicit_gemm(const T* grad_output, const T* input,
                                             float* partials, int splits, T* grad_weight_krsc,
                                             const ConvGeometry& g, cudaStream_t stream) {
  static bool attribute_set[64] = {};
  const cudaError_t err = allow_shared_bytes(grad_weight_kernel<T>, kSharedBytes, attribute_set);
  if (err != cudaSuccess) return err;
  const int64_t pixels = g.batch * g.out_h * g.out_w;
  const int64_t reduction = g.kernel_h * g.kernel_w * g.in_channels;
  const dim3 grid(static_cast<unsigned int>(ceil_div(reduction, SquareTile::kN)),
                  static_cast<unsigned int>(ceil_div(g.out_channels, SquareTile::kM)), splits);
  launch_kernel(grad_weight_kernel<T>, grid, kBlockThreads, kSharedBytes, stream, grad_output,
                input, partials, g, ceil_div(pixels, splits));
  const int64_t size = g.out_channels * reduction;
  launch_kernel(sum_partials_kernel<T>, blocks_for(size), kThreads, 0, stream, partials, splits,
                size, static_cast<const T*>(nullptr), /*relu=*/false, grad_weight_krsc,
                PixelLayout::rows_of(reduction));
  return cudaGetLastError();
}

bool implicit_gemm_fits(const ConvGeometry& g, int element_bytes) {
  const int64_t vec = kChunkBytes / element_bytes;
  const int64_t int_max = (int64_t{1} << 31) - 1;
  // Input rows and columns, padding (negative in grad_input's stride phases) and a window's
  // extent under 2^29, so that a window's positions and kNoRow plus any tap stay within
  // 32 bits.
  const int64_t extent_limit = int64_t{1} << 29;
  const bool extents_fit = std::max({g.in_h, g.in_w, std::abs(g.pad_h), std::abs(g.pad_w),
                                     (g.kernel_h - 1) * g.dilation_h,
                                     (g.kernel_w - 1) * g.dilation_w}) < extent_limit;
  return g.groups == 1 && g.in_channels % vec == 0 && extents_fit &&
         g.kernel_h * g.kernel_w * g.in_channels <= int_max && g.in_h * g.in_w <= int_max &&
         g.out_channels <= int_max && g.batch * g.out_h * g.out_w <= int_max &&
         ceil_div(g.out_channels, SquareTile::kN) <= 65535;
}

bool implicit_gemm_grad_weight_fits(const ConvGeometry& g, int element_bytes) {
  const int64_t vec = kChunkBytes / element_bytes;
  return implicit_gemm_fits(g, element_bytes) && g.out_channels % vec == 0 &&
         ceil_div(g.out_channels, SquareTile::kM) <= 65535;
}

#define INSTANTIATE(T)                                                                          \
  template cudaError_t conv2d_forward_implicit_gemm<T>(                                        \
      const T*, const T*, const T*, T*, const Strides4&, const ConvGeometry&, bool, float*,     \
      int, int, cudaStream_t);                                                                 \
  template cudaError_t conv2d_grad_weight_implicit_gemm<T>(const T*, const T*, float*, int, T*, \
                                                           const ConvGeometry&, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(__half)
INSTANTIATE(__nv_bfloat16)
#undef INSTANTIATE

}  // namespace classic_ops::cuda
