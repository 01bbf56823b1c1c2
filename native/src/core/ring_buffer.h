// Fixed-capacity float ring buffer with absolute int64 sample indices.
//
// head() is the oldest held index, tail() one past the newest; both only grow, and the
// slot of index i is i % capacity. One producer thread (Push) and one consumer thread
// (Read / Consume / Pop) may use it at once without locks:
//  - the producer publishes samples with a release store of tail;
//  - the consumer releases samples with a CAS on head;
//  - under kDropOldest the producer also advances head (CAS) past samples it is about to
//    overwrite and adds exactly the amount it advanced to dropped(). Every index below
//    tail() is therefore either consumed or counted as dropped, exactly once.
// Samples are stored as relaxed atomics, so a consumer racing with an overwriting
// producer reads stale-or-new values (never undefined behaviour) and detects the loss:
// Read() rechecks head after copying (release/acquire fences order the producer's head
// CAS before its overwrite), Pop() claims its samples with a CAS from the head it read.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "spoof/spoof.h"

namespace spoof::core {

class RingBuffer {
 public:
  // Throws Error(INVALID_ARGUMENT) for capacity outside [1, kMaxCapacity] or a bad policy.
  RingBuffer(int64_t capacity, int32_t overflow_policy);
  ~RingBuffer();
  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;

  static constexpr int64_t kMaxCapacity = int64_t{1} << 28;  // 1 GiB of floats

  // Producer. kError: SPOOF_ERR_OVERFLOW (nothing written) unless n fits in the free space.
  // kDropOldest: always succeeds; when n > capacity only the newest capacity samples are kept.
  spoof_status Push(const float* x, int64_t n);
  // Free space as the producer sees it (the consumer can only make it larger).
  int64_t FreeSpace() const;

  // Consumer. Copy [start, start + n): INVALID_ARGUMENT if the range is not within
  // [head, tail); OVERFLOW if the producer overwrote part of it during the copy.
  spoof_status Read(int64_t start, float* out, int64_t n) const;
  // Release samples before new_head (<= tail). new_head < head is INVALID_ARGUMENT under
  // kError; under kDropOldest it is a no-op (the producer may have dropped past it).
  spoof_status Consume(int64_t new_head);
  // Copy and release up to max_n of the oldest samples; *start receives the index of
  // out[0] and *n_out the count (0 if empty). Samples returned are never also counted
  // as dropped.
  void Pop(float* out, int64_t max_n, int64_t* start, int64_t* n_out);

  int64_t head() const { return head_.load(std::memory_order_acquire); }
  int64_t tail() const { return tail_.load(std::memory_order_acquire); }
  int64_t dropped() const { return dropped_.load(std::memory_order_acquire); }
  int64_t capacity() const { return capacity_; }
  int32_t policy() const { return policy_; }
  // Not thread-safe: back to empty with indices at 0 and dropped() == 0.
  void Reset();

 private:
  void Store(int64_t index, const float* x, int64_t n);
  void Load(int64_t index, float* out, int64_t n) const;

  const int64_t capacity_;
  const int32_t policy_;
  std::atomic<float>* data_ = nullptr;
  alignas(64) std::atomic<int64_t> head_{0};
  alignas(64) std::atomic<int64_t> tail_{0};
  alignas(64) std::atomic<int64_t> dropped_{0};
};

}  // namespace spoof::core
