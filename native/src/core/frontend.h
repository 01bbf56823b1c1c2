// The streaming front end: bytes -> decode -> resample -> ring buffer -> windows.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "core/resampler.h"
#include "core/ring_buffer.h"
#include "spoof/spoof.h"

namespace spoof::core {

// Largest push accepted per call (documented in spoof.h as SPOOF_MAX_PUSH_BYTES /
// SPOOF_MAX_PUSH_SAMPLES): larger pushes are a caller error, not an out-of-memory crash.
constexpr int64_t kMaxPushBytes = SPOOF_MAX_PUSH_BYTES;
constexpr int64_t kMaxPushSamples = SPOOF_MAX_PUSH_SAMPLES;

// Validates every field (throws Error(INVALID_ARGUMENT) naming the field, the valid range
// and the value given) and resolves defaults (capacity_samples == 0).
spoof_frontend_options ValidateOptions(const spoof_frontend_options& opts);

class Frontend {
 public:
  explicit Frontend(const spoof_frontend_options& validated);

  const spoof_frontend_options& options() const { return opts_; }

  // Producer side. Return the number of model-rate samples appended to the ring.
  int64_t Push(const uint8_t* data, int64_t n_bytes, int32_t encoding);
  int64_t PushFloat(const float* x, int64_t n);
  // End of stream (producer side); idempotent.
  void Flush();
  bool flushed() const { return flushed_.load(std::memory_order_acquire); }

  // Consumer side: true and a filled *info when a window was copied to out.
  bool NextWindow(float* out, int64_t out_capacity, spoof_window_info* info);

  void Reset();  // needs external synchronisation
  void GetStats(spoof_frontend_stats* stats) const;

 private:
  // Decode/resample/append n whole samples starting with `first` (an already-decoded
  // sample formed from pending bytes, or none).
  int64_t Feed(const uint8_t* data, int64_t n_samples, int32_t encoding, const float* first, int n_first);
  void CheckRoom(int64_t model_samples, const char* what) const;
  void ReleaseHistory();  // consumer side

  spoof_frontend_options opts_;
  Resampler resampler_;
  RingBuffer ring_;

  // producer state
  uint8_t pending_[4] = {};
  int pending_n_ = 0;
  int32_t pending_encoding_ = 0;
  std::vector<float> decoded_;
  std::vector<float> resampled_;
  std::vector<float> flush_tail_;  // the resampler's last outputs, written by (repeated) Flush
  int64_t flush_done_ = 0;
  bool flush_started_ = false;
  std::atomic<int64_t> samples_in_{0};
  std::atomic<int64_t> pending_bytes_{0};
  std::atomic<int64_t> discarded_bytes_{0};
  std::atomic<bool> flushed_{false};

  // consumer state
  int64_t next_start_ = 0;
  int64_t last_start_ = -1;
  bool final_done_ = false;
  std::atomic<int64_t> windows_emitted_{0};
};

}  // namespace spoof::core
