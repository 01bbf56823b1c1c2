#include "core/ring_buffer.h"

#include <algorithm>
#include <cstdlib>
#include <new>

#include "core/error.h"

namespace spoof::core {

static_assert(sizeof(std::atomic<float>) == sizeof(float), "atomic<float> must be a plain float");
static_assert(std::atomic<float>::is_always_lock_free, "atomic<float> must be lock-free");
static_assert(std::atomic<int64_t>::is_always_lock_free, "atomic<int64_t> must be lock-free");

RingBuffer::RingBuffer(int64_t capacity, int32_t overflow_policy)
    : capacity_(capacity), policy_(overflow_policy) {
  if (capacity < 1 || capacity > kMaxCapacity) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT, Format("ring buffer capacity must be in [1, %lld] samples; got %lld",
                                             static_cast<long long>(kMaxCapacity),
                                             static_cast<long long>(capacity)));
  }
  if (overflow_policy != SPOOF_OVERFLOW_ERROR && overflow_policy != SPOOF_OVERFLOW_DROP_OLDEST) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT,
          Format("overflow policy must be SPOOF_OVERFLOW_ERROR (0) or SPOOF_OVERFLOW_DROP_OLDEST (1); got %d",
                 static_cast<int>(overflow_policy)));
  }
  // calloc: zeroed pages are mapped lazily, so a large capacity costs only what is used.
  void* p = std::calloc(static_cast<size_t>(capacity), sizeof(std::atomic<float>));
  if (p == nullptr) throw std::bad_alloc();
  data_ = static_cast<std::atomic<float>*>(p);
}

RingBuffer::~RingBuffer() { std::free(data_); }

void RingBuffer::Store(int64_t index, const float* x, int64_t n) {
  int64_t slot = index % capacity_;
  for (int64_t i = 0; i < n; ++i) {
    data_[slot].store(x[i], std::memory_order_relaxed);
    if (++slot == capacity_) slot = 0;
  }
}

void RingBuffer::Load(int64_t index, float* out, int64_t n) const {
  int64_t slot = index % capacity_;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = data_[slot].load(std::memory_order_relaxed);
    if (++slot == capacity_) slot = 0;
  }
}

int64_t RingBuffer::FreeSpace() const {
  return capacity_ - (tail_.load(std::memory_order_relaxed) - head_.load(std::memory_order_acquire));
}

spoof_status RingBuffer::Push(const float* x, int64_t n) {
  if (n <= 0) return SPOOF_OK;
  const int64_t t = tail_.load(std::memory_order_relaxed);  // only this thread writes tail
  const int64_t new_tail = t + n;
  if (policy_ == SPOOF_OVERFLOW_ERROR) {
    const int64_t h = head_.load(std::memory_order_acquire);
    if (new_tail - h > capacity_) return SPOOF_ERR_OVERFLOW;
    Store(t, x, n);
  } else {
    const int64_t required = new_tail - capacity_;
    int64_t h = head_.load(std::memory_order_acquire);
    while (h < required) {
      if (head_.compare_exchange_weak(h, required, std::memory_order_acq_rel, std::memory_order_acquire)) {
        dropped_.fetch_add(required - h, std::memory_order_acq_rel);
        break;
      }
    }
    // Order the head CAS before the overwrites (pairs with the consumer's acquire fence).
    std::atomic_thread_fence(std::memory_order_release);
    const int64_t skip = std::max<int64_t>(0, n - capacity_);
    Store(t + skip, x + skip, n - skip);
  }
  tail_.store(new_tail, std::memory_order_release);
  return SPOOF_OK;
}

spoof_status RingBuffer::Read(int64_t start, float* out, int64_t n) const {
  if (n < 0) return SPOOF_ERR_INVALID_ARGUMENT;
  const int64_t t = tail_.load(std::memory_order_acquire);
  const int64_t h = head_.load(std::memory_order_acquire);
  if (start < h || start + n > t) return SPOOF_ERR_INVALID_ARGUMENT;
  Load(start, out, n);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (head_.load(std::memory_order_relaxed) > start) return SPOOF_ERR_OVERFLOW;
  return SPOOF_OK;
}

spoof_status RingBuffer::Consume(int64_t new_head) {
  const int64_t t = tail_.load(std::memory_order_acquire);
  if (new_head > t) return SPOOF_ERR_INVALID_ARGUMENT;
  int64_t h = head_.load(std::memory_order_acquire);
  if (new_head < h) return policy_ == SPOOF_OVERFLOW_ERROR ? SPOOF_ERR_INVALID_ARGUMENT : SPOOF_OK;
  while (h < new_head) {
    if (head_.compare_exchange_weak(h, new_head, std::memory_order_acq_rel, std::memory_order_acquire)) break;
  }
  return SPOOF_OK;
}

void RingBuffer::Pop(float* out, int64_t max_n, int64_t* start, int64_t* n_out) {
  int64_t h = head_.load(std::memory_order_acquire);
  for (;;) {
    const int64_t t = tail_.load(std::memory_order_acquire);
    const int64_t n = std::min(std::max<int64_t>(max_n, 0), t - h);
    if (n <= 0) {
      *start = h;
      *n_out = 0;
      return;
    }
    Load(h, out, n);
    std::atomic_thread_fence(std::memory_order_acquire);
    // Succeeds only if the producer did not drop (and so did not overwrite) from h on.
    if (head_.compare_exchange_strong(h, h + n, std::memory_order_acq_rel, std::memory_order_acquire)) {
      *start = h;
      *n_out = n;
      return;
    }
    // h now holds the producer's new head; the samples before it were counted as dropped.
  }
}

void RingBuffer::Reset() {
  head_.store(0, std::memory_order_relaxed);
  tail_.store(0, std::memory_order_relaxed);
  dropped_.store(0, std::memory_order_relaxed);
}

}  // namespace spoof::core
