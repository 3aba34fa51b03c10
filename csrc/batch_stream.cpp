#include "batch_stream.hpp"

#include <algorithm>
#include <stdexcept>

#if defined(__linux__)
#include <pthread.h>
#endif

namespace fastgan {

Buffer BufferPool::acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      auto buffer = std::move(free_.back());
      free_.pop_back();
      return buffer;
    }
    ++allocated_;
  }
  // Uninitialised on purpose: every byte a batch exposes is written by gather().
  return Buffer(static_cast<std::uint8_t*>(::operator new[](bytes_, std::align_val_t(kBufferAlignment))));
}

void BufferPool::release(Buffer buffer) {
  std::lock_guard<std::mutex> lock(mu_);
  // Keep enough for steady state; buffers beyond that came from a user holding many batches at once.
  if (free_.size() < max_free_) free_.push_back(std::move(buffer));
}

std::size_t BufferPool::allocated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return allocated_;
}

namespace {

std::size_t round_up(std::size_t x, std::size_t m) { return (x + m - 1) / m * m; }

std::shared_ptr<BufferPool> reuse_or_make_pool(std::shared_ptr<BufferPool> pool, std::size_t bytes,
                                               std::size_t max_free) {
  if (pool && pool->serves(bytes, max_free)) return pool;
  return std::make_shared<BufferPool>(bytes, max_free);
}

}  // namespace

BatchStream::BatchStream(StreamSpec spec)
    : spec_(std::move(spec)),
      sample_bytes_(spec_.rows * spec_.width * pixel_size(spec_.pixels.type)),
      labels_offset_(round_up(spec_.batch_size * sample_bytes_, 64)),
      num_batches_((spec_.order.size() + spec_.batch_size - 1) / spec_.batch_size),
      chunks_per_batch_(std::min<std::size_t>(spec_.num_threads, spec_.batch_size)),
      chunk_size_((spec_.batch_size + chunks_per_batch_ - 1) / chunks_per_batch_),
      pool_(reuse_or_make_pool(spec_.pool, labels_offset_ + spec_.batch_size * sizeof(std::int64_t),
                               std::size_t(spec_.prefetch) + 2)),
      slots_(spec_.prefetch),
      scratch_(spec_.num_threads, std::vector<std::uint8_t>(scratch_size(spec_.width))) {
  workers_.reserve(spec_.num_threads);
  for (auto& row : scratch_) {
    workers_.emplace_back([this, &row] { work(row.data()); });
#if defined(__linux__)
    // Named before the constructor returns, for thread listings (top -H, py-spy, /proc/PID/task/*/comm).
    pthread_setname_np(workers_.back().native_handle(), "fastgan-loader");
#endif
  }
}

BatchStream::~BatchStream() { close(); }

void BatchStream::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  ready_cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
}

void BatchStream::work(std::uint8_t* scratch) {
  const std::size_t total_tasks = num_batches_ * chunks_per_batch_;
  const std::size_t window = slots_.size();
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // A batch may start only once the batch `window` places before it has been handed out,
    // so at most `prefetch` batches are in flight and each slot is free when reused.
    work_cv_.wait(lock, [&] {
      return stop_ || next_task_ >= total_tasks || next_task_ / chunks_per_batch_ < consumed_ + window;
    });
    if (stop_ || next_task_ >= total_tasks) return;
    const std::size_t task = next_task_++;
    const std::size_t batch = task / chunks_per_batch_;
    Slot& slot = slots_[batch % window];
    if (slot.batch != std::int64_t(batch)) {
      try {
        slot.buffer = pool_->acquire();
      } catch (const std::bad_alloc&) {
        error_ = "out of memory allocating a batch buffer; lower batch_size or prefetch";
        ready_cv_.notify_all();
        return;
      }
      slot.batch = std::int64_t(batch);
      slot.remaining = chunks_per_batch_;
    }
    std::uint8_t* buffer = slot.buffer.get();
    lock.unlock();
    gather(buffer, batch, task % chunks_per_batch_, scratch);
    lock.lock();
    if (--slot.remaining == 0) ready_cv_.notify_all();
  }
}

void BatchStream::gather(std::uint8_t* buffer, std::size_t batch, std::size_t chunk, std::uint8_t* scratch) const {
  const std::size_t start = batch * spec_.batch_size;
  const std::size_t size = std::min(spec_.batch_size, spec_.order.size() - start);
  const std::size_t lo = std::min(size, chunk * chunk_size_);
  const std::size_t hi = std::min(size, lo + chunk_size_);
  const std::size_t in_bytes = spec_.rows * spec_.width;
  // Labels first, in their own loop: their scattered reads then overlap one another instead of each
  // waiting behind a sample's conversion, which evicts the label array from the near caches.
  auto* labels = reinterpret_cast<std::int64_t*>(buffer + labels_offset_);
  for (std::size_t i = lo; i < hi; ++i) labels[i] = spec_.labels ? spec_.labels[spec_.order[start + i]] : 0;
  for (std::size_t i = lo; i < hi; ++i) {
    const std::uint8_t* src = spec_.images + std::size_t(spec_.order[start + i]) * in_bytes;
    const bool flip = !spec_.flips.empty() && spec_.flips[start + i];
    write_sample(src, buffer + i * sample_bytes_, spec_.rows, spec_.width, flip, spec_.pixels, scratch);
  }
  fence_streaming_stores();
}

bool BatchStream::next(Batch& out) {
  std::unique_lock<std::mutex> lock(mu_);
  if (consumed_ >= num_batches_) return false;
  Slot& slot = slots_[consumed_ % slots_.size()];
  ready_cv_.wait(lock, [&] {
    return stop_ || !error_.empty() || (slot.batch == std::int64_t(consumed_) && slot.remaining == 0);
  });
  if (!error_.empty()) throw std::runtime_error(error_);
  if (stop_) return false;
  out.lease.reset(new Lease{pool_, std::move(slot.buffer)});
  out.size = std::min(spec_.batch_size, spec_.order.size() - consumed_ * spec_.batch_size);
  out.labels_offset = labels_offset_;
  ++consumed_;
  lock.unlock();
  work_cv_.notify_all();
  return true;
}

}  // namespace fastgan
