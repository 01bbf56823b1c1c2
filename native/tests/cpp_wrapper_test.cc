// C++ test through the header-only RAII wrapper spoof.hpp: ownership, moves, exceptions
// built from status codes, and chunking bit-identity of the whole front end.
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "spoof/spoof.hpp"
#include "test_util.h"

namespace {

static_assert(!std::is_copy_constructible<spoof::Frontend>::value, "move-only");
static_assert(std::is_nothrow_move_constructible<spoof::Frontend>::value, "noexcept moves");
static_assert(!std::is_copy_assignable<spoof::RingBuffer>::value, "move-only");

struct Collected {
  std::vector<float> samples;  // concatenated regular windows
  std::vector<int64_t> starts;
  std::vector<float> final_window;
  int64_t final_start = -1;
};

Collected Drain(spoof::Frontend& fe, Collected c = {}) {
  std::vector<float> buf;
  while (auto info = fe.NextWindow(buf)) {
    if (info->is_final) {
      c.final_window.assign(buf.begin(), buf.begin() + info->n_samples);
      c.final_start = info->start_index;
    } else {
      c.starts.push_back(info->start_index);
      c.samples.insert(c.samples.end(), buf.begin(), buf.begin() + info->n_samples);
    }
  }
  return c;
}

Collected Run(int32_t rate, spoof_encoding enc, const std::vector<uint8_t>& bytes, std::mt19937& rng,
              bool one_shot) {
  spoof::FrontendOptions o;
  o.input_sample_rate = rate;
  o.window_samples = 1500;
  o.hop_samples = 700;
  o.capacity_samples = 1 << 20;
  o.encoding = enc;
  spoof::Frontend fe(o);
  Collected c;
  size_t off = 0;
  while (off < bytes.size()) {
    size_t n = one_shot ? bytes.size() : std::uniform_int_distribution<size_t>(0, 97)(rng);
    if (n > bytes.size() - off) n = bytes.size() - off;
    fe.Push(bytes.data() + off, n);
    off += n;
    c = Drain(fe, std::move(c));
  }
  fe.Flush();
  return Drain(fe, std::move(c));
}

void TestChunkingIdentity() {
  std::mt19937 rng(1234);
  const int32_t rates[] = {8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000};
  const spoof_encoding encs[] = {SPOOF_ENCODING_PCM16, SPOOF_ENCODING_FLOAT32, SPOOF_ENCODING_MULAW,
                                 SPOOF_ENCODING_ALAW};
  for (int32_t rate : rates) {
    for (spoof_encoding enc : encs) {
      const size_t n_samples = static_cast<size_t>(rate) / 8;
      std::vector<uint8_t> bytes;
      if (enc == SPOOF_ENCODING_FLOAT32) {
        std::normal_distribution<float> g(0.0f, 0.2f);
        for (size_t i = 0; i < n_samples; ++i) {
          const float v = g(rng);
          uint8_t b[4];
          std::memcpy(b, &v, 4);
          bytes.insert(bytes.end(), b, b + 4);
        }
      } else {
        const size_t bps = enc == SPOOF_ENCODING_PCM16 ? 2 : 1;
        bytes.resize(n_samples * bps);
        for (auto& b : bytes) b = static_cast<uint8_t>(rng());
      }
      const Collected a = Run(rate, enc, bytes, rng, true);
      const Collected b = Run(rate, enc, bytes, rng, false);
      EXPECT(!a.samples.empty());
      EXPECT(a.starts == b.starts);
      EXPECT(a.samples.size() == b.samples.size() &&
             std::memcmp(a.samples.data(), b.samples.data(), a.samples.size() * sizeof(float)) == 0);
      EXPECT(a.final_start == b.final_start && a.final_window == b.final_window);
    }
  }
}

void TestErrorsAndOwnership() {
  spoof::FrontendOptions o;
  o.input_sample_rate = -1;
  EXPECT_THROWS(spoof::Frontend{o}, spoof::Error, SPOOF_ERR_INVALID_ARGUMENT);
  o.input_sample_rate = 8000;
  o.window_samples = 320;
  o.hop_samples = 160;
  o.capacity_samples = 480;
  o.encoding = SPOOF_ENCODING_MULAW;
  spoof::Frontend fe(o);
  std::vector<uint8_t> bytes(1000, 0xFF);
  EXPECT_THROWS(fe.Push(bytes.data(), bytes.size()), spoof::OverflowError, SPOOF_ERR_OVERFLOW);
  EXPECT(fe.Stats().samples_in == 0);  // all-or-nothing
  fe.Push(bytes.data(), 200);          // 400 samples at 16 kHz fit in 480
  spoof::Frontend moved(std::move(fe));
  EXPECT(!fe && moved);
  std::vector<float> buf;
  EXPECT(moved.NextWindow(buf).has_value());
  moved.Flush();
  EXPECT_THROWS(moved.Push(bytes.data(), 1), spoof::StateError, SPOOF_ERR_STATE);
  moved.Reset();
  moved.Push(bytes.data(), 1, SPOOF_ENCODING_PCM16);  // half a pcm16 sample pending
  float nan_bytes = 0.0f;
  const uint32_t qnan = 0x7FC00000u;
  std::memcpy(&nan_bytes, &qnan, 4);
  EXPECT_THROWS(moved.Push(&nan_bytes, 4, SPOOF_ENCODING_FLOAT32), spoof::Error, SPOOF_ERR_INVALID_ARGUMENT);
  moved.Reset();
  EXPECT_THROWS(moved.Push(&nan_bytes, 4, SPOOF_ENCODING_FLOAT32), spoof::Error, SPOOF_ERR_INVALID_AUDIO);

  spoof::RingBuffer r(8, SPOOF_OVERFLOW_ERROR);
  spoof::RingBuffer r2 = std::move(r);
  const float x[3] = {1, 2, 3};
  r2.Push(x, 3);
  float out[3];
  const auto got = r2.Pop(out, 3);
  EXPECT(got.first == 0 && got.second == 3 && out[2] == 3.0f);
  EXPECT_THROWS(r2.Read(0, out, 1), spoof::Error, SPOOF_ERR_INVALID_ARGUMENT);
  EXPECT(spoof::AbiVersion() == SPOOF_ABI_VERSION && !spoof::VersionString().empty());

  const std::vector<float> y = spoof::Resample(x, 3, 16000, 48000);
  EXPECT(y.size() == 9 && y[0] == 1.0f && y[3] == 2.0f && y[6] == 3.0f);
  const std::vector<float> d = spoof::Decode(bytes.data(), 4, SPOOF_ENCODING_MULAW);
  EXPECT(d.size() == 4 && d[0] == 0.0f);
}

}  // namespace

int main() {
  TestChunkingIdentity();
  TestErrorsAndOwnership();
  return TestResult("cpp_wrapper_test");
}
