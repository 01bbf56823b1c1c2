#include "core/frontend.h"

#include <algorithm>
#include <cstring>

#include "core/codec.h"
#include "core/error.h"

namespace spoof::core {
namespace {

constexpr int64_t kFeedChunk = 4096;  // input samples decoded + resampled per step


}  // namespace

spoof_frontend_options ValidateOptions(const spoof_frontend_options& in) {
  spoof_frontend_options o = in;
  ValidateSampleRate(o.input_sample_rate, "input_sample_rate");
  ValidateSampleRate(o.model_sample_rate, "model_sample_rate");
  const int64_t max_cap = RingBuffer::kMaxCapacity;
  if (o.window_samples < 1 || o.window_samples > max_cap / 2) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT, Format("window_samples must be in [1, %lld]; got %lld",
                                             static_cast<long long>(max_cap / 2),
                                             static_cast<long long>(o.window_samples)));
  }
  if (o.hop_samples < 1 || o.hop_samples > o.window_samples) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT,
          Format("hop_samples must be in [1, window_samples = %lld]; got %lld",
                 static_cast<long long>(o.window_samples), static_cast<long long>(o.hop_samples)));
  }
  const int64_t min_cap = o.window_samples + o.hop_samples;
  if (o.capacity_samples == 0) o.capacity_samples = std::max(min_cap, std::min(4 * o.window_samples, max_cap));
  if (o.capacity_samples < min_cap || o.capacity_samples > max_cap) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT,
          Format("capacity_samples must be 0 (default) or in [window_samples + hop_samples = %lld, %lld] "
                 "(the ring holds a window plus the history of the right-aligned final window); got %lld",
                 static_cast<long long>(min_cap), static_cast<long long>(max_cap),
                 static_cast<long long>(in.capacity_samples)));
  }
  if (o.overflow_policy != SPOOF_OVERFLOW_ERROR && o.overflow_policy != SPOOF_OVERFLOW_DROP_OLDEST) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT,
          Format("overflow_policy must be SPOOF_OVERFLOW_ERROR (0) or SPOOF_OVERFLOW_DROP_OLDEST (1); got %d",
                 static_cast<int>(o.overflow_policy)));
  }
  (void)BytesPerSample(o.encoding);
  return o;
}

Frontend::Frontend(const spoof_frontend_options& validated)
    : opts_(validated),
      resampler_(validated.input_sample_rate, validated.model_sample_rate),
      ring_(validated.capacity_samples, validated.overflow_policy) {
  decoded_.reserve(kFeedChunk);
}

void Frontend::CheckRoom(int64_t model_samples, const char* what) const {
  if (ring_.policy() != SPOOF_OVERFLOW_ERROR) return;
  const int64_t free_space = ring_.FreeSpace();
  if (model_samples > free_space) {
    Throw(SPOOF_ERR_OVERFLOW,
          Format("ring buffer full: %s would add %lld samples at the model rate but only %lld of %lld are free "
                 "(overflow policy 'error'; nothing was written): drain windows with next_window, push smaller "
                 "chunks, or use drop_oldest",
                 what, static_cast<long long>(model_samples), static_cast<long long>(free_space),
                 static_cast<long long>(ring_.capacity())));
  }
}

int64_t Frontend::Feed(const uint8_t* data, int64_t n_samples, int32_t encoding, const float* first, int n_first) {
  const int bps = BytesPerSample(encoding);
  int64_t added = 0;
  auto emit = [&](const float* x, int64_t n) {
    resampled_.clear();
    resampler_.Push(x, n, &resampled_);
    const spoof_status st = ring_.Push(resampled_.data(), static_cast<int64_t>(resampled_.size()));
    if (st != SPOOF_OK) Throw(SPOOF_ERR_INTERNAL, "ring buffer rejected a push that CheckRoom admitted");
    added += static_cast<int64_t>(resampled_.size());
  };
  if (n_first > 0) emit(first, n_first);
  for (int64_t off = 0; off < n_samples; off += kFeedChunk) {
    const int64_t m = std::min(kFeedChunk, n_samples - off);
    if (data != nullptr) {
      decoded_.resize(static_cast<size_t>(m));
      DecodeSamples(data + off * bps, static_cast<size_t>(m), encoding, decoded_.data());
      emit(decoded_.data(), m);
    }
  }
  samples_in_.fetch_add(n_samples + n_first, std::memory_order_relaxed);
  return added;
}

int64_t Frontend::Push(const uint8_t* data, int64_t n_bytes, int32_t encoding) {
  if (flush_started_) Throw(SPOOF_ERR_STATE, "push after flush: call reset() to start a new stream");
  if (encoding == 0) encoding = opts_.encoding;
  const int bps = BytesPerSample(encoding);
  if (n_bytes < 0 || n_bytes > kMaxPushBytes) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT, Format("a push carries at most %lld bytes (SPOOF_MAX_PUSH_BYTES); got %lld",
                                             static_cast<long long>(kMaxPushBytes),
                                             static_cast<long long>(n_bytes)));
  }
  if (n_bytes == 0) return 0;
  if (pending_n_ > 0 && encoding != pending_encoding_) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT,
          Format("encoding %s differs from the %s encoding of the %d pending byte(s) of an incomplete sample",
                 EncodingName(encoding), EncodingName(pending_encoding_), pending_n_));
  }
  // Complete the pending sample first (if these bytes reach its end).
  float first = 0.0f;
  int n_first = 0;
  int64_t off = 0;
  uint8_t pending[4];
  int pending_n = pending_n_;
  std::memcpy(pending, pending_, 4);
  if (pending_n > 0) {
    const int64_t need = bps - pending_n;
    const int64_t take = std::min(need, n_bytes);
    std::memcpy(pending + pending_n, data, static_cast<size_t>(take));
    pending_n += static_cast<int>(take);
    off = take;
    if (pending_n == bps) {
      DecodeSamples(pending, 1, encoding, &first, samples_in_.load(std::memory_order_relaxed));
      n_first = 1;
      pending_n = 0;
    }
  }
  const int64_t whole = (n_bytes - off) / bps;
  const int64_t rest = (n_bytes - off) % bps;
  if (rest > 0) {  // a new partial sample at the end
    std::memcpy(pending, data + off + whole * bps, static_cast<size_t>(rest));
    pending_n = static_cast<int>(rest);
  }
  // Validate everything before touching any state: float32 must be finite.
  if (encoding == SPOOF_ENCODING_FLOAT32 && whole > 0) {
    std::vector<float> probe(static_cast<size_t>(std::min<int64_t>(whole, kFeedChunk)));
    for (int64_t o = 0; o < whole; o += kFeedChunk) {
      const int64_t m = std::min(kFeedChunk, whole - o);
      DecodeSamples(data + off + o * 4, static_cast<size_t>(m), encoding, probe.data(),
                    samples_in_.load(std::memory_order_relaxed) + n_first + o);
    }
  }
  CheckRoom(resampler_.OutputsAfterPush(n_first + whole), "this push");
  const int64_t added = Feed(data + off, whole, encoding, &first, n_first);
  std::memcpy(pending_, pending, 4);
  pending_n_ = pending_n;
  pending_encoding_ = encoding;
  pending_bytes_.store(pending_n, std::memory_order_relaxed);
  return added;
}

int64_t Frontend::PushFloat(const float* x, int64_t n) {
  if (flush_started_) Throw(SPOOF_ERR_STATE, "push after flush: call reset() to start a new stream");
  if (n < 0 || n > kMaxPushSamples) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT,
          Format("a float push carries at most %lld samples (SPOOF_MAX_PUSH_SAMPLES); got %lld",
                 static_cast<long long>(kMaxPushSamples), static_cast<long long>(n)));
  }
  if (pending_n_ > 0) {
    Throw(SPOOF_ERR_INVALID_ARGUMENT,
          Format("cannot push float samples while %d byte(s) of an incomplete %s sample are pending", pending_n_,
                 EncodingName(pending_encoding_)));
  }
  if (n == 0) return 0;
  int64_t bad = 0;
  if (!AllFinite(x, n, &bad)) {
    Throw(SPOOF_ERR_INVALID_AUDIO, Format("float audio must be finite; sample %lld is not",
                                          static_cast<long long>(samples_in_.load() + bad)));
  }
  CheckRoom(resampler_.OutputsAfterPush(n), "this push");
  int64_t added = 0;
  for (int64_t off = 0; off < n; off += kFeedChunk) {
    const int64_t m = std::min(kFeedChunk, n - off);
    added += Feed(nullptr, 0, SPOOF_ENCODING_FLOAT32, x + off, static_cast<int>(m));
  }
  return added;
}

void Frontend::Flush() {
  if (flushed()) return;
  if (!flush_started_) {
    flush_tail_.clear();
    resampler_.Flush(&flush_tail_);
    flush_done_ = 0;
    flush_started_ = true;
    discarded_bytes_.fetch_add(pending_n_, std::memory_order_relaxed);
    pending_n_ = 0;
    pending_bytes_.store(0, std::memory_order_relaxed);
  }
  // The resampler's tail may not fit at once under the error policy: write what fits and
  // report the rest; the caller drains windows and calls flush again.
  const int64_t remaining = static_cast<int64_t>(flush_tail_.size()) - flush_done_;
  int64_t n = remaining;
  if (ring_.policy() == SPOOF_OVERFLOW_ERROR) n = std::min(n, ring_.FreeSpace());
  if (n > 0) {
    if (ring_.Push(flush_tail_.data() + flush_done_, n) != SPOOF_OK) {
      Throw(SPOOF_ERR_INTERNAL, "ring buffer rejected a flush write that fitted");
    }
    flush_done_ += n;
  }
  if (flush_done_ < static_cast<int64_t>(flush_tail_.size())) {
    Throw(SPOOF_ERR_OVERFLOW,
          Format("ring buffer full during flush: %lld of the resampler's last %lld samples are still to be "
                 "written (overflow policy 'error'): drain windows with next_window and call flush again",
                 static_cast<long long>(static_cast<int64_t>(flush_tail_.size()) - flush_done_),
                 static_cast<long long>(flush_tail_.size())));
  }
  flushed_.store(true, std::memory_order_release);
}

bool Frontend::NextWindow(float* out, int64_t out_capacity, spoof_window_info* info) {
  const int64_t w = opts_.window_samples, hop = opts_.hop_samples;
  if (out_capacity < w) {
    Throw(SPOOF_ERR_BUFFER_TOO_SMALL, Format("window buffer must hold window_samples = %lld floats; got %lld",
                                             static_cast<long long>(w), static_cast<long long>(out_capacity)));
  }
  for (;;) {
    const bool fl = flushed_.load(std::memory_order_acquire);
    const int64_t h = ring_.head();
    if (next_start_ < h) next_start_ += (h - next_start_ + hop - 1) / hop * hop;  // windows lost to drops
    const int64_t t = ring_.tail();
    if (next_start_ + w <= t) {
      const spoof_status st = ring_.Read(next_start_, out, w);
      // Under drop_oldest the producer may drop past next_start_ after we looked at head
      // (INVALID_ARGUMENT: start < head) or while we copy (OVERFLOW): skip ahead and retry.
      if (st != SPOOF_OK && ring_.policy() == SPOOF_OVERFLOW_DROP_OLDEST) continue;
      if (st != SPOOF_OK) Throw(SPOOF_ERR_INTERNAL, "window read outside the ring buffer");
      *info = spoof_window_info{next_start_, w, 0, 0};
      last_start_ = next_start_;
      next_start_ += hop;
      ReleaseHistory();
      windows_emitted_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (!fl) {
      ReleaseHistory();
      return false;
    }
    if (final_done_) return false;
    final_done_ = true;
    const int64_t emitted = windows_emitted_.load(std::memory_order_relaxed);
    if (emitted == 0 && t >= 1) {  // shorter than one window: all of it, zero-padded
      if (ring_.Read(0, out, t) != SPOOF_OK) Throw(SPOOF_ERR_INTERNAL, "final short window not in the ring");
      std::fill(out + t, out + w, 0.0f);
      *info = spoof_window_info{0, t, 1, 0};
    } else if (emitted > 0 && last_start_ + w < t) {  // right-aligned on the last sample
      if (ring_.Read(t - w, out, w) != SPOOF_OK) Throw(SPOOF_ERR_INTERNAL, "final window not in the ring");
      *info = spoof_window_info{t - w, w, 1, 0};
    } else {
      return false;
    }
    windows_emitted_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
}

void Frontend::ReleaseHistory() {
  // Keep what the next regular window (from next_start_) and the right-aligned final
  // window (from tail - window at the earliest, never before the last window's start)
  // can still need; release the rest so that a producer under the error policy can
  // always push up to capacity - window_samples (>= hop) model-rate samples.
  const int64_t tail = ring_.tail();
  const int64_t floor = std::max<int64_t>(last_start_, 0);
  const int64_t target = std::min(next_start_, std::max(floor, tail - opts_.window_samples));
  if (target > ring_.head()) (void)ring_.Consume(target);
}

void Frontend::Reset() {
  resampler_.Reset();
  ring_.Reset();
  pending_n_ = 0;
  pending_encoding_ = 0;
  flush_tail_.clear();
  flush_done_ = 0;
  flush_started_ = false;
  samples_in_.store(0);
  pending_bytes_.store(0);
  discarded_bytes_.store(0);
  next_start_ = 0;
  last_start_ = -1;
  final_done_ = false;
  windows_emitted_.store(0);
  flushed_.store(false, std::memory_order_release);
}

void Frontend::GetStats(spoof_frontend_stats* s) const {
  const int64_t head = ring_.head();
  const int64_t tail = ring_.tail();
  s->samples_in = samples_in_.load(std::memory_order_relaxed);
  s->samples_out = tail;
  s->samples_dropped = ring_.dropped();
  s->windows_emitted = windows_emitted_.load(std::memory_order_relaxed);
  s->pending_bytes = pending_bytes_.load(std::memory_order_relaxed);
  s->buffered_samples = tail - head;
  s->discarded_bytes = discarded_bytes_.load(std::memory_order_relaxed);
}

}  // namespace spoof::core
