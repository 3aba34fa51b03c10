// One epoch of batches gathered by worker threads into pooled buffers, in an order given by the caller.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "pixels.hpp"

namespace fastgan {

// Batch buffers start on a cache line: whole-vector streaming stores (up to 64 bytes) then cover every
// sample whose size is a multiple of 64 bytes, and the tensors viewing them meet PyTorch's alignment.
constexpr std::size_t kBufferAlignment = 64;
struct AlignedDelete {
  void operator()(std::uint8_t* p) const { ::operator delete[](p, std::align_val_t(kBufferAlignment)); }
};
using Buffer = std::unique_ptr<std::uint8_t[], AlignedDelete>;

// Recycles batch buffers. A buffer comes back only when its Lease is destroyed, i.e. when Python has
// dropped every array (and tensor) viewing it, so a batch the user still holds is never overwritten.
// One pool may serve successive streams (epochs), so that each epoch does not map and zero fresh pages.
class BufferPool {
 public:
  BufferPool(std::size_t bytes, std::size_t max_free) : bytes_(bytes), max_free_(max_free) {}
  Buffer acquire();
  void release(Buffer buffer);
  std::size_t allocated() const;
  bool serves(std::size_t bytes, std::size_t max_free) const { return bytes == bytes_ && max_free == max_free_; }

 private:
  const std::size_t bytes_;
  const std::size_t max_free_;
  mutable std::mutex mu_;
  std::vector<Buffer> free_;
  std::size_t allocated_ = 0;
};

// Owns one handed-out batch buffer; returns it to the pool on destruction.
struct Lease {
  std::shared_ptr<BufferPool> pool;
  Buffer buffer;
  ~Lease() {
    if (buffer) pool->release(std::move(buffer));
  }
};

struct Batch {
  std::unique_ptr<Lease> lease;
  std::size_t size = 0;            // samples in this batch (the last one may be short)
  std::size_t labels_offset = 0;   // byte offset of the int64 labels inside the buffer
};

struct StreamSpec {
  const std::uint8_t* images;      // (n, rows, width) uint8, C-contiguous; rows = channels * height
  std::uint64_t n;
  std::size_t rows;
  std::size_t width;
  const std::int64_t* labels;      // n labels, or nullptr (then the batch labels are zeros)
  std::vector<std::int64_t> order; // sample indices, all in [0, n); batch b is order[b*B : (b+1)*B]
  std::vector<std::uint8_t> flips; // empty, or one 0/1 per entry of order: mirror that sample left-right
  std::size_t batch_size;
  PixelMap pixels;                 // what each output pixel is
  int num_threads;
  int prefetch;                    // batches gathered ahead of the consumer
  std::shared_ptr<BufferPool> pool; // an earlier stream's pool to reuse if its buffers fit, or nullptr
};

class BatchStream {
 public:
  explicit BatchStream(StreamSpec spec);
  ~BatchStream();
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;

  // Blocks until the next batch is complete. Returns false after the last batch or after close().
  bool next(Batch& out);
  // Stops and joins the workers; idempotent. Batches already handed out stay valid.
  void close();
  std::size_t num_batches() const { return num_batches_; }
  std::size_t buffers_allocated() const { return pool_->allocated(); }
  const std::shared_ptr<BufferPool>& pool() const { return pool_; }

 private:
  struct Slot {
    std::int64_t batch = -1;
    Buffer buffer;
    std::size_t remaining = 0;  // chunks of this batch not yet gathered
  };

  void work(std::uint8_t* scratch);
  void gather(std::uint8_t* buffer, std::size_t batch, std::size_t chunk, std::uint8_t* scratch) const;

  const StreamSpec spec_;
  const std::size_t sample_bytes_;
  const std::size_t labels_offset_;
  const std::size_t num_batches_;
  const std::size_t chunks_per_batch_;
  const std::size_t chunk_size_;
  std::shared_ptr<BufferPool> pool_;

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable ready_cv_;
  std::vector<Slot> slots_;
  std::size_t next_task_ = 0;
  std::size_t consumed_ = 0;
  bool stop_ = false;
  std::string error_;
  std::vector<std::vector<std::uint8_t>> scratch_;  // per worker, for mirrored rows
  std::vector<std::thread> workers_;
};

}  // namespace fastgan
