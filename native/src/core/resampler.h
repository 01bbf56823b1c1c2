// Streaming polyphase windowed-sinc resampler for any rational ratio.
//
// Output sample k is aligned with input time t_k = k * in_rate / out_rate (no start-up
// delay: the linear-phase filter is centred on t_k and the samples before index 0 are
// zeros). Output k needs input samples up to floor(t_k) + K (K = half the filter span),
// so a streaming push returns every output whose inputs are all present, and Flush()
// pads K zeros and returns the rest: ceil(n_in * out_rate / in_rate) samples in total.
//
// Every output is one dot product of a contiguous input span with the taps of its phase,
// summed in a fixed order (16 independent lanes, then a fixed tree), so the output is
// bit-identical whatever the chunking of the input.
//
// Filter: Kaiser-windowed sinc, each phase normalised to unit DC gain. Downsampling:
// designed for 80 dB, passband to 0.45 x the output rate, stopband from 0.50 x the output
// rate (its Nyquist). Upsampling: half-band designed for 75 dB, transition [0.45, 0.55] x
// the input rate, so phase 0 copies the input exactly and the images of everything below
// 0.45 x input rate are >= 75 dB down. in_rate == out_rate is an exact pass-through.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace spoof::core {

constexpr int32_t kMinSampleRate = 1000;
constexpr int32_t kMaxSampleRate = 384000;

// Throws Error(INVALID_ARGUMENT) unless rate is in [kMinSampleRate, kMaxSampleRate].
void ValidateSampleRate(int64_t rate, const char* what);

class Resampler {
 public:
  Resampler(int32_t in_rate, int32_t out_rate);

  int32_t in_rate() const { return in_rate_; }
  int32_t out_rate() const { return out_rate_; }
  bool identity() const { return L_ == 1 && M_ == 1; }
  int64_t up() const { return L_; }
  int64_t down() const { return M_; }
  int taps_per_phase() const { return T_; }
  int half_span() const { return K_; }

  // ceil(n_in * out / in) for the reduced ratio up/down (no int64 overflow for n_in < 2^53).
  static int64_t OutputLength(int64_t n_in, int64_t up, int64_t down);

  int64_t inputs_seen() const { return n_in_; }
  int64_t outputs_done() const { return k_; }
  // Outputs that Push(n more inputs) would append, and that Flush() would append now.
  int64_t OutputsAfterPush(int64_t n) const;
  int64_t OutputsOnFlush() const;

  // Append n input samples; write the outputs that became computable to out (room for
  // OutputsAfterPush(n) floats) and return their count.
  int64_t Push(const float* x, int64_t n, float* out);
  // End of stream: write the remaining OutputsOnFlush() outputs. Push after Flush throws.
  int64_t Flush(float* out);
  // Same, appending to a vector.
  void Push(const float* x, int64_t n, std::vector<float>* out);
  void Flush(std::vector<float>* out);
  bool flushed() const { return flushed_; }
  void Reset();

 private:
  int64_t Produce(int64_t until, float* out);
  const float* PhaseTaps(int64_t phase);
  void ComputePhase(int64_t phase, float* taps) const;

  int32_t in_rate_, out_rate_;
  int64_t L_ = 1, M_ = 1;  // out/in = L/M, reduced
  int K_ = 0;              // inputs needed after floor(t_k)
  int T_ = 0;              // taps per phase (multiple of 16); span = [n - (T - K) + 1, n + K]
  double cutoff_ = 0.0;    // cycles per input sample
  double half_width_ = 0.0;  // Kaiser half-width in input samples
  double beta_ = 0.0;
  bool phase0_is_delta_ = false;  // upsampling: phase 0 taps are exactly {.., 0, 1, 0, ..}
  std::shared_ptr<const std::vector<float>> table_;  // L x T taps (shared), or null: computed on the fly
  std::vector<float> scratch_taps_;
  int64_t scratch_phase_ = -1;

  std::vector<float> buf_;  // input history; buf_[0] is input index base_
  int64_t base_ = 0;
  int64_t n_in_ = 0;  // inputs pushed
  int64_t k_ = 0;     // outputs produced
  int64_t n_ = 0;     // floor(k_ * M / L)
  int64_t p_ = 0;     // (k_ * M) mod L
  bool flushed_ = false;
};

}  // namespace spoof::core
