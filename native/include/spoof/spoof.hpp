// spoof.hpp - header-only C++17 RAII wrapper over the C ABI in spoof.h.
//
// Move-only owners (spoof::Frontend, spoof::RingBuffer) destroy their handle exactly once;
// every failing status becomes a spoof::Error carrying the status and the thread's
// spoof_last_error() message (spoof::OverflowError for SPOOF_ERR_OVERFLOW,
// spoof::StateError for SPOOF_ERR_STATE, std::bad_alloc for SPOOF_ERR_OUT_OF_MEMORY).
// Only the C ABI is used, so this header works against any libspoof with the same ABI.
//
//   spoof::FrontendOptions opts;           // defaults from spoof_frontend_options_init
//   opts.input_sample_rate = 8000;
//   spoof::Frontend fe(opts);
//   fe.Push(bytes, n, SPOOF_ENCODING_MULAW);
//   std::vector<float> buf(fe.window_samples());
//   while (auto info = fe.NextWindow(buf)) { use(buf.data(), info->n_samples, info->start_index); }
#ifndef SPOOF_SPOOF_HPP_
#define SPOOF_SPOOF_HPP_

#include <cstddef>
#include <cstdint>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "spoof/spoof.h"

namespace spoof {

class Error : public std::runtime_error {
 public:
  Error(spoof_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  spoof_status status() const noexcept { return status_; }

 private:
  spoof_status status_;
};

class OverflowError : public Error {
 public:
  using Error::Error;
};

class StateError : public Error {
 public:
  using Error::Error;
};

inline void Check(spoof_status status) {
  if (status == SPOOF_OK) return;
  const std::string message = spoof_last_error();
  switch (status) {
    case SPOOF_ERR_OUT_OF_MEMORY:
      throw std::bad_alloc();
    case SPOOF_ERR_OVERFLOW:
      throw OverflowError(status, message);
    case SPOOF_ERR_STATE:
      throw StateError(status, message);
    default:
      throw Error(status, message);
  }
}

inline std::string VersionString() { return spoof_version_string(); }
inline int32_t AbiVersion() { return spoof_abi_version(); }

inline std::vector<float> Decode(const void* data, size_t n_bytes, spoof_encoding encoding) {
  const size_t bps = encoding == SPOOF_ENCODING_PCM16 ? 2 : (encoding == SPOOF_ENCODING_FLOAT32 ? 4 : 1);
  std::vector<float> out(n_bytes / bps);
  size_t n = 0;
  Check(spoof_decode(data, n_bytes, encoding, out.data(), out.size(), &n));
  out.resize(n);
  return out;
}

inline std::vector<float> Resample(const float* x, int64_t n, int32_t in_sr, int32_t out_sr) {
  int64_t total = 0;
  Check(spoof_resample_output_length(n, in_sr, out_sr, &total));
  std::vector<float> out(static_cast<size_t>(total));
  int64_t written = 0;
  Check(spoof_resample(x, n, in_sr, out_sr, out.data(), total, &written));
  return out;
}

struct FrontendOptions : spoof_frontend_options {
  FrontendOptions() : spoof_frontend_options() { spoof_frontend_options_init(this); }
};

class Frontend {
 public:
  explicit Frontend(const spoof_frontend_options& options) : window_(options.window_samples) {
    Check(spoof_frontend_create(&options, &fe_));
  }
  ~Frontend() { spoof_frontend_destroy(fe_); }
  Frontend(const Frontend&) = delete;
  Frontend& operator=(const Frontend&) = delete;
  Frontend(Frontend&& other) noexcept
      : fe_(std::exchange(other.fe_, nullptr)), window_(other.window_) {}
  Frontend& operator=(Frontend&& other) noexcept {
    if (this != &other) {
      spoof_frontend_destroy(fe_);
      fe_ = std::exchange(other.fe_, nullptr);
      window_ = other.window_;
    }
    return *this;
  }

  spoof_frontend* get() const noexcept { return fe_; }
  explicit operator bool() const noexcept { return fe_ != nullptr; }
  int64_t window_samples() const noexcept { return window_; }

  // encoding 0: the options' encoding.
  void Push(const void* data, size_t n_bytes, int32_t encoding = 0) {
    Check(spoof_frontend_push(fe_, data, n_bytes, encoding));
  }
  void PushFloat(const float* x, size_t n) { Check(spoof_frontend_push_float(fe_, x, n)); }
  // Fills out (resized to window_samples if smaller) and returns the window's info, or nullopt.
  std::optional<spoof_window_info> NextWindow(std::vector<float>& out) {
    if (out.size() < static_cast<size_t>(window_)) out.resize(static_cast<size_t>(window_));
    spoof_window_info info{};
    int32_t has = 0;
    Check(spoof_frontend_next_window(fe_, out.data(), out.size(), &info, &has));
    if (!has) return std::nullopt;
    return info;
  }
  void Flush() { Check(spoof_frontend_flush(fe_)); }
  void Reset() { Check(spoof_frontend_reset(fe_)); }
  spoof_frontend_stats Stats() const {
    spoof_frontend_stats s{};
    s.struct_size = sizeof(s);
    Check(spoof_frontend_get_stats(fe_, &s));
    return s;
  }

 private:
  spoof_frontend* fe_ = nullptr;
  int64_t window_ = 0;
};

class RingBuffer {
 public:
  RingBuffer(int64_t capacity, spoof_overflow_policy policy) { Check(spoof_ring_create(capacity, policy, &ring_)); }
  ~RingBuffer() { spoof_ring_destroy(ring_); }
  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;
  RingBuffer(RingBuffer&& other) noexcept : ring_(std::exchange(other.ring_, nullptr)) {}
  RingBuffer& operator=(RingBuffer&& other) noexcept {
    if (this != &other) {
      spoof_ring_destroy(ring_);
      ring_ = std::exchange(other.ring_, nullptr);
    }
    return *this;
  }

  spoof_ring* get() const noexcept { return ring_; }
  void Push(const float* x, int64_t n) { Check(spoof_ring_push(ring_, x, n)); }
  void Read(int64_t start, float* out, int64_t n) const { Check(spoof_ring_read(ring_, start, out, n)); }
  void Consume(int64_t new_head) { Check(spoof_ring_consume(ring_, new_head)); }
  // Returns (start index, count) of the samples copied into out.
  std::pair<int64_t, int64_t> Pop(float* out, int64_t max_n) {
    int64_t start = 0, n = 0;
    Check(spoof_ring_pop(ring_, out, max_n, &start, &n));
    return {start, n};
  }
  int64_t head() const noexcept { return spoof_ring_head(ring_); }
  int64_t tail() const noexcept { return spoof_ring_tail(ring_); }
  int64_t dropped() const noexcept { return spoof_ring_dropped(ring_); }
  int64_t capacity() const noexcept { return spoof_ring_capacity(ring_); }

 private:
  spoof_ring* ring_ = nullptr;
};

}  // namespace spoof

#endif  // SPOOF_SPOOF_HPP_
