// libFuzzer target: random bytes, encodings, rates, window/hop/capacity, overflow policies
// and chunk sizes into the front end through the C ABI (the surface hosts use).
//
// Checks, beyond "no crash / no sanitizer report": every status is a known code with a
// message; windows never exceed window_samples; integer encodings give finite samples in
// [-2, 2]; and a second front end fed the same bytes in one push (when both accept
// everything) produces bit-identical windows, i.e. chunking never changes the output.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "spoof/spoof.h"

namespace {

struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t Byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  uint16_t U16() { return static_cast<uint16_t>(Byte() | (Byte() << 8)); }
};

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "frontend_fuzz invariant violated: %s (last error '%s')\n", what, spoof_last_error());
    std::abort();
  }
}

void CheckStatus(spoof_status st) {
  Require(st >= SPOOF_OK && st <= SPOOF_ERR_INTERNAL, "status code in range");
  Require(st != SPOOF_ERR_INTERNAL && st != SPOOF_ERR_OUT_OF_MEMORY, "no internal/out-of-memory error");
  if (st != SPOOF_OK) Require(std::strlen(spoof_last_error()) > 0, "failing call sets a message");
}

struct Windows {
  std::vector<float> samples;
  std::vector<int64_t> meta;
};

void Drain(spoof_frontend* fe, int64_t window, bool integer_encoding, Windows* w) {
  std::vector<float> buf(static_cast<size_t>(window));
  for (;;) {
    spoof_window_info info{};
    int32_t has = 0;
    const spoof_status st = spoof_frontend_next_window(fe, buf.data(), buf.size(), &info, &has);
    CheckStatus(st);
    if (st != SPOOF_OK || !has) return;
    Require(info.n_samples >= 1 && info.n_samples <= window && info.start_index >= 0, "window bounds");
    for (int64_t i = 0; i < info.n_samples; ++i) {
      const float v = buf[static_cast<size_t>(i)];
      // |output| <= max|input| x the L1 norm of the taps (< 2)
      if (integer_encoding) Require(std::isfinite(v) && std::fabs(v) <= 2.0f, "integer audio stays bounded");
    }
    w->samples.insert(w->samples.end(), buf.begin(), buf.begin() + info.n_samples);
    w->meta.push_back(info.start_index);
    w->meta.push_back(info.is_final);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int32_t kRates[] = {1000, 8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 96000,
                                   0,    -1,   1000000000};
  Reader r{data, size};
  const int32_t encoding = static_cast<int32_t>(r.Byte() % 6);  // 0 and 5 are invalid
  spoof_frontend_options o;
  spoof_frontend_options_init(&o);
  o.input_sample_rate = kRates[r.Byte() % (sizeof(kRates) / sizeof(kRates[0]))];
  o.model_sample_rate = (r.Byte() & 1) ? 16000 : 8000;
  o.window_samples = static_cast<int64_t>(r.U16() % 2048) - 2;
  o.hop_samples = static_cast<int64_t>(r.U16() % 2048) - 2;
  const uint8_t cap = r.Byte();
  o.capacity_samples = cap < 128 ? 0 : static_cast<int64_t>(cap) * 64;
  o.overflow_policy = r.Byte() % 3;  // 2 is invalid
  o.encoding = encoding;

  spoof_frontend* fe = nullptr;
  spoof_status st = spoof_frontend_create(&o, &fe);
  CheckStatus(st);
  if (st != SPOOF_OK) {
    Require(fe == nullptr, "failed create leaves *out untouched");
    return 0;
  }
  const bool integer = encoding != SPOOF_ENCODING_FLOAT32;
  const uint8_t max_chunk = static_cast<uint8_t>(r.Byte() | 1);
  const std::vector<uint8_t> payload(r.p, r.p + r.n);

  Windows chunked;
  bool all_ok = true;
  size_t off = 0;
  uint32_t lcg = max_chunk;  // chunk sizes (0 included: a no-op push) from a generator seeded by the input
  while (off < payload.size()) {
    lcg = lcg * 1103515245u + 12345u;
    size_t n = (lcg >> 16) % (static_cast<size_t>(max_chunk) + 1);
    if (n > payload.size() - off) n = payload.size() - off;
    st = spoof_frontend_push(fe, payload.data() + off, n, 0);
    CheckStatus(st);
    if (st == SPOOF_OK) {
      off += n;
      if ((lcg >> 8) & 1) Drain(fe, o.window_samples, integer, &chunked);
    } else if (st == SPOOF_ERR_OVERFLOW) {  // all-or-nothing: drain, then retry the same bytes
      const size_t before = chunked.meta.size();
      Drain(fe, o.window_samples, integer, &chunked);
      if (chunked.meta.size() == before) {  // nothing to drain: this push can never fit
        all_ok = false;
        break;
      }
    } else {  // a rejected push would be rejected forever
      all_ok = false;
      break;
    }
  }
  st = spoof_frontend_flush(fe);
  CheckStatus(st);
  for (int i = 0; st == SPOOF_ERR_OVERFLOW; ++i) {  // drain and retry: must make progress
    Require(i < 100000, "repeated flush completes");
    Drain(fe, o.window_samples, integer, &chunked);
    st = spoof_frontend_flush(fe);
    CheckStatus(st);
  }
  Require(st == SPOOF_OK, "flush succeeds");
  Drain(fe, o.window_samples, integer, &chunked);
  spoof_frontend_stats stats{};
  stats.struct_size = sizeof(stats);
  CheckStatus(spoof_frontend_get_stats(fe, &stats));
  Require(stats.samples_out >= stats.buffered_samples && stats.samples_dropped >= 0, "stats consistent");

  // One-shot reference with an unbounded ring: identical windows whenever nothing failed
  // or was dropped in the chunked run.
  if (all_ok && stats.samples_dropped == 0 && payload.size() <= SPOOF_MAX_PUSH_BYTES) {
    o.capacity_samples = stats.samples_out + o.window_samples + o.hop_samples + 16;
    spoof_frontend* ref = nullptr;
    CheckStatus(spoof_frontend_create(&o, &ref));
    Windows one;
    CheckStatus(spoof_frontend_push(ref, payload.data(), payload.size(), 0));
    CheckStatus(spoof_frontend_flush(ref));
    Drain(ref, o.window_samples, integer, &one);
    Require(one.meta == chunked.meta, "same windows whatever the chunking");
    Require(one.samples.size() == chunked.samples.size() &&
                (one.samples.empty() || std::memcmp(one.samples.data(), chunked.samples.data(),
                                                    one.samples.size() * sizeof(float)) == 0),
            "bit-identical windows whatever the chunking");
    spoof_frontend_destroy(ref);
  }

  CheckStatus(spoof_frontend_reset(fe));
  spoof_frontend_destroy(fe);

  // One-shot helpers on the same bytes.
  std::vector<float> dec(payload.size() + 1);
  size_t n_dec = 0;
  CheckStatus(spoof_decode(payload.data(), payload.size(), encoding, dec.data(), dec.size(), &n_dec));
  return 0;
}
