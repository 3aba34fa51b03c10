#include "batch_stream.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace fastgan {

std::unique_ptr<std::uint8_t[]> BufferPool::acquire() {
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
  return std::unique_ptr<std::uint8_t[]>(new std::uint8_t[bytes_]);
}

void BufferPool::release(std::unique_ptr<std::uint8_t[]> buffer) {
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

}  // namespace

BatchStream::BatchStream(StreamSpec spec)
    : spec_(std::move(spec)),
      sample_bytes_(spec_.rows * spec_.width * (spec_.lut ? spec_.elem_size : 1)),
      labels_offset_(round_up(spec_.batch_size * sample_bytes_, 64)),
      num_batches_((spec_.order.size() + spec_.batch_size - 1) / spec_.batch_size),
      chunks_per_batch_(std::min<std::size_t>(spec_.num_threads, spec_.batch_size)),
      chunk_size_((spec_.batch_size + chunks_per_batch_ - 1) / chunks_per_batch_),
      pool_(std::make_shared<BufferPool>(labels_offset_ + spec_.batch_size * sizeof(std::int64_t),
                                         std::size_t(spec_.prefetch) + 2)),
      slots_(spec_.prefetch) {
  workers_.reserve(spec_.num_threads);
  for (int i = 0; i < spec_.num_threads; ++i) workers_.emplace_back([this] { work(); });
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

void BatchStream::work() {
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
    gather(buffer, batch, task % chunks_per_batch_);
    lock.lock();
    if (--slot.remaining == 0) ready_cv_.notify_all();
  }
}

template <typename T>
void BatchStream::gather_sample(const std::uint8_t* src, T* dst, bool flip) const {
  const T* lut = static_cast<const T*>(spec_.lut);
  const std::size_t w = spec_.width;
  if (!flip) {
    const std::size_t count = spec_.rows * w;
    for (std::size_t k = 0; k < count; ++k) dst[k] = lut[src[k]];
    return;
  }
  for (std::size_t r = 0; r < spec_.rows; ++r) {
    const std::uint8_t* s = src + r * w;
    T* d = dst + r * w;
    for (std::size_t x = 0; x < w; ++x) d[x] = lut[s[w - 1 - x]];
  }
}

void BatchStream::gather(std::uint8_t* buffer, std::size_t batch, std::size_t chunk) const {
  const std::size_t start = batch * spec_.batch_size;
  const std::size_t size = std::min(spec_.batch_size, spec_.order.size() - start);
  const std::size_t lo = std::min(size, chunk * chunk_size_);
  const std::size_t hi = std::min(size, lo + chunk_size_);
  const std::size_t in_bytes = spec_.rows * spec_.width;
  auto* labels = reinterpret_cast<std::int64_t*>(buffer + labels_offset_);
  for (std::size_t i = lo; i < hi; ++i) {
    const std::int64_t index = spec_.order[start + i];
    const bool flip = !spec_.flips.empty() && spec_.flips[start + i];
    const std::uint8_t* src = spec_.images + std::size_t(index) * in_bytes;
    std::uint8_t* dst = buffer + i * sample_bytes_;
    if (spec_.lut == nullptr) {
      if (!flip) {
        std::memcpy(dst, src, in_bytes);
      } else {
        for (std::size_t r = 0; r < spec_.rows; ++r)
          std::reverse_copy(src + r * spec_.width, src + (r + 1) * spec_.width, dst + r * spec_.width);
      }
    } else if (spec_.elem_size == 4) {
      gather_sample(src, reinterpret_cast<std::uint32_t*>(dst), flip);
    } else {
      gather_sample(src, reinterpret_cast<std::uint16_t*>(dst), flip);
    }
    labels[i] = spec_.labels ? spec_.labels[index] : 0;
  }
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
