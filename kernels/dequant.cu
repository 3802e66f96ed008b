// Batched dequantisation kernel and its launcher (dequant.h).
//
// Grid: x = item, y = row blocks. A block walks rows of its item; within a
// row each thread decodes chunks of 8 consecutive stored columns (one 64-bit
// code window, DequantChunk). Narrow matrices (U bands are [out, width] with
// width often 16..64) put several rows in one pass of the block so that no
// thread idles: threads_per_row is the power of two >= chunks per row.
#include <algorithm>

#include "kernels/dequant.h"
#include "kernels/quant_decode_inl.h"

namespace skillpack::kernels {
namespace {

constexpr int kThreads = 256;
// Total blocks aimed at when there are many items (each block strides over
// rows, so fewer blocks only means more rows per block).
constexpr int kTargetBlocks = 8192;
constexpr int kMaxRowBlocks = 65535;  // gridDim.y limit

template <typename T>
__global__ void __launch_bounds__(kThreads) BatchedDequantKernel(const DequantItem<T>* items) {
  const DequantItem<T> item = items[blockIdx.x];
  const QuantMatrixView& m = item.src;
  if (m.rows <= 0 || m.cols <= 0 || m.group_size <= 0 || !(m.bits == 2 || m.bits == 3 || m.bits == 4 || m.bits == 8) ||
      item.out == nullptr || item.ld_out < m.cols) {
    return;
  }
  const int chunks_per_row = (m.cols + kCodesPerChunk - 1) / kCodesPerChunk;
  int threads_per_row = 1;
  while (threads_per_row < chunks_per_row && threads_per_row < kThreads) {
    threads_per_row <<= 1;
  }
  const int rows_per_pass = kThreads / threads_per_row;
  const int lane = threadIdx.x % threads_per_row;
  const int64_t row_step = static_cast<int64_t>(gridDim.y) * rows_per_pass;
  for (int64_t r = static_cast<int64_t>(blockIdx.y) * rows_per_pass + threadIdx.x / threads_per_row; r < m.rows;
       r += row_step) {
    for (int c = lane; c < chunks_per_row; c += threads_per_row) {
      DequantChunk(item, static_cast<int>(r), c * kCodesPerChunk);
    }
  }
}

}  // namespace

template <typename T>
cudaError_t invokeBatchedDequant(const DequantItem<T>* d_items, int num_items, int max_rows, cudaStream_t stream) {
  if (num_items < 0 || max_rows < 0) return cudaErrorInvalidValue;
  if (num_items == 0 || max_rows == 0) return cudaSuccess;
  if (d_items == nullptr) return cudaErrorInvalidValue;
  const int per_item_cap = std::max(8, kTargetBlocks / num_items);
  const int row_blocks = std::min({(max_rows + 7) / 8, per_item_cap, kMaxRowBlocks});
  const dim3 grid(static_cast<unsigned>(num_items), static_cast<unsigned>(std::max(row_blocks, 1)));
  BatchedDequantKernel<T><<<grid, kThreads, 0, stream>>>(d_items);
  return cudaGetLastError();
}

template cudaError_t invokeBatchedDequant<__half>(const DequantItem<__half>*, int, int, cudaStream_t);
template cudaError_t invokeBatchedDequant<__nv_bfloat16>(const DequantItem<__nv_bfloat16>*, int, int, cudaStream_t);

}  // namespace skillpack::kernels
