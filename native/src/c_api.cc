// The C ABI (spoof.h) over the C++ core. Every entry point catches everything: no
// exception crosses this boundary, and failures set the thread-local last error.
#include <algorithm>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <numeric>
#include <vector>

#include "core/codec.h"
#include "core/error.h"
#include "core/frontend.h"
#include "core/resampler.h"
#include "core/ring_buffer.h"
#include "spoof/spoof.h"
#include "spoof_version.h"

struct spoof_frontend {
  explicit spoof_frontend(const spoof_frontend_options& o) : impl(o) {}
  spoof::core::Frontend impl;
};

struct spoof_ring {
  spoof_ring(int64_t capacity, int32_t policy) : impl(capacity, policy) {}
  spoof::core::RingBuffer impl;
};

namespace {

constexpr size_t kErrorCapacity = 1024;
thread_local char g_last_error[kErrorCapacity] = "";

spoof_status Fail(spoof_status status, const char* message) noexcept {
  // Messages say what was expected and what was given; the status travels separately.
  size_t n = std::strlen(message);
  if (n >= kErrorCapacity) n = kErrorCapacity - 1;
  std::memcpy(g_last_error, message, n);
  g_last_error[n] = '\0';
  return status;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
spoof_status Failf(spoof_status status, const char* fmt, ...) noexcept {
  char buf[kErrorCapacity];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return Fail(status, buf);
}

template <class F>
spoof_status Guard(F&& f) noexcept {
  try {
    return f();
  } catch (const spoof::core::Error& e) {
    return Fail(e.status(), e.what());
  } catch (const std::bad_alloc&) {
    return Fail(SPOOF_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return Fail(SPOOF_ERR_INTERNAL, e.what());
  } catch (...) {
    return Fail(SPOOF_ERR_INTERNAL, "unknown C++ exception");
  }
}

spoof_status Null(const char* function, const char* argument) noexcept {
  return Failf(SPOOF_ERR_INVALID_ARGUMENT, "%s: %s must not be NULL", function, argument);
}

constexpr int64_t kMaxResampleInput = int64_t{1} << 40;


}  // namespace

extern "C" {

int32_t spoof_abi_version(void) { return SPOOF_ABI_VERSION; }
const char* spoof_version_string(void) { return SPOOF_VERSION_STRING; }
const char* spoof_last_error(void) { return g_last_error; }

const char* spoof_status_name(spoof_status status) {
  // C callers may pass any int: read it as one (an out-of-range enum load is UB in C++).
  int code = 0;
  static_assert(sizeof(code) == sizeof(status), "spoof_status is int-sized");
  std::memcpy(&code, &status, sizeof(code));
  switch (code) {
    case SPOOF_OK:
      return "SPOOF_OK";
    case SPOOF_ERR_INVALID_ARGUMENT:
      return "SPOOF_ERR_INVALID_ARGUMENT";
    case SPOOF_ERR_INVALID_AUDIO:
      return "SPOOF_ERR_INVALID_AUDIO";
    case SPOOF_ERR_OVERFLOW:
      return "SPOOF_ERR_OVERFLOW";
    case SPOOF_ERR_BUFFER_TOO_SMALL:
      return "SPOOF_ERR_BUFFER_TOO_SMALL";
    case SPOOF_ERR_STATE:
      return "SPOOF_ERR_STATE";
    case SPOOF_ERR_OUT_OF_MEMORY:
      return "SPOOF_ERR_OUT_OF_MEMORY";
    case SPOOF_ERR_INTERNAL:
      return "SPOOF_ERR_INTERNAL";
  }
  return "SPOOF_ERR_UNKNOWN";
}

spoof_status spoof_decode(const void* data, size_t n_bytes, int32_t encoding, float* out, size_t out_capacity,
                          size_t* n_out) {
  return Guard([&]() -> spoof_status {
    if (data == nullptr && n_bytes > 0) return Null("spoof_decode", "data");
    if (n_out == nullptr) return Null("spoof_decode", "n_out");
    const int bps = spoof::core::BytesPerSample(encoding);
    if (n_bytes % static_cast<size_t>(bps) != 0) {
      return Failf(SPOOF_ERR_INVALID_ARGUMENT,
                   "spoof_decode: n_bytes must be a multiple of %d (bytes per %s sample); got %zu", bps,
                   spoof::core::EncodingName(encoding), n_bytes);
    }
    const size_t n = n_bytes / static_cast<size_t>(bps);
    if (out_capacity < n) {
      return Failf(SPOOF_ERR_BUFFER_TOO_SMALL, "spoof_decode: out must hold %zu samples; out_capacity is %zu", n,
                   out_capacity);
    }
    if (out == nullptr && n > 0) return Null("spoof_decode", "out");
    spoof::core::DecodeSamples(static_cast<const uint8_t*>(data), n, encoding, out);
    *n_out = n;
    return SPOOF_OK;
  });
}

spoof_status spoof_resample_output_length(int64_t n_in, int32_t in_sr, int32_t out_sr, int64_t* n_out) {
  return Guard([&]() -> spoof_status {
    if (n_out == nullptr) return Null("spoof_resample_output_length", "n_out");
    if (n_in < 0 || n_in > kMaxResampleInput) {
      return Failf(SPOOF_ERR_INVALID_ARGUMENT, "n_in must be in [0, 2^40]; got %lld", static_cast<long long>(n_in));
    }
    spoof::core::ValidateSampleRate(in_sr, "in_sr");
    spoof::core::ValidateSampleRate(out_sr, "out_sr");
    const int64_t g = std::gcd(static_cast<int64_t>(in_sr), static_cast<int64_t>(out_sr));
    *n_out = spoof::core::Resampler::OutputLength(n_in, out_sr / g, in_sr / g);
    return SPOOF_OK;
  });
}

spoof_status spoof_resample(const float* in, int64_t n_in, int32_t in_sr, int32_t out_sr, float* out,
                            int64_t out_capacity, int64_t* n_out) {
  return Guard([&]() -> spoof_status {
    if (in == nullptr && n_in > 0) return Null("spoof_resample", "in");
    if (n_out == nullptr) return Null("spoof_resample", "n_out");
    if (n_in < 0 || n_in > kMaxResampleInput) {
      return Failf(SPOOF_ERR_INVALID_ARGUMENT, "spoof_resample: n_in must be in [0, 2^40]; got %lld",
                   static_cast<long long>(n_in));
    }
    spoof::core::ValidateSampleRate(in_sr, "in_sr");
    spoof::core::ValidateSampleRate(out_sr, "out_sr");
    const int64_t g = std::gcd(static_cast<int64_t>(in_sr), static_cast<int64_t>(out_sr));
    const int64_t total = spoof::core::Resampler::OutputLength(n_in, out_sr / g, in_sr / g);
    if (out_capacity < total) {
      return Failf(SPOOF_ERR_BUFFER_TOO_SMALL, "spoof_resample: out must hold %lld samples; out_capacity is %lld",
                   static_cast<long long>(total), static_cast<long long>(out_capacity));
    }
    if (out == nullptr && total > 0) return Null("spoof_resample", "out");
    int64_t bad = 0;
    if (!spoof::core::AllFinite(in, n_in, &bad)) {
      return Failf(SPOOF_ERR_INVALID_AUDIO, "spoof_resample: input must be finite; sample %lld is not",
                   static_cast<long long>(bad));
    }
    spoof::core::Resampler rs(in_sr, out_sr);
    int64_t written = rs.Push(in, n_in, out);
    written += rs.Flush(out + written);
    if (written != total) return Fail(SPOOF_ERR_INTERNAL, "spoof_resample: output length mismatch");
    *n_out = written;
    return SPOOF_OK;
  });
}

void spoof_frontend_options_init(spoof_frontend_options* opts) {
  if (opts == nullptr) return;
  std::memset(opts, 0, sizeof(*opts));
  opts->struct_size = sizeof(spoof_frontend_options);
  opts->input_sample_rate = 16000;
  opts->model_sample_rate = 16000;
  opts->window_samples = 64000;
  opts->hop_samples = 32000;
  opts->capacity_samples = 0;
  opts->overflow_policy = SPOOF_OVERFLOW_ERROR;
  opts->encoding = SPOOF_ENCODING_PCM16;
}

spoof_status spoof_frontend_create(const spoof_frontend_options* opts, spoof_frontend** out) {
  return Guard([&]() -> spoof_status {
    if (opts == nullptr) return Null("spoof_frontend_create", "opts");
    if (out == nullptr) return Null("spoof_frontend_create", "out");
    constexpr size_t kMinSize = offsetof(spoof_frontend_options, input_sample_rate) + sizeof(int32_t);
    if (opts->struct_size < kMinSize) {
      return Failf(SPOOF_ERR_INVALID_ARGUMENT,
                   "spoof_frontend_create: opts->struct_size must be set (call spoof_frontend_options_init); "
                   "expected >= %zu, got %zu",
                   kMinSize, opts->struct_size);
    }
    spoof_frontend_options full;
    spoof_frontend_options_init(&full);
    std::memcpy(&full, opts, std::min(opts->struct_size, sizeof(full)));  // older callers: defaults for the rest
    full.struct_size = sizeof(full);
    const spoof_frontend_options validated = spoof::core::ValidateOptions(full);
    *out = new spoof_frontend(validated);
    return SPOOF_OK;
  });
}

void spoof_frontend_destroy(spoof_frontend* fe) { delete fe; }

spoof_status spoof_frontend_push(spoof_frontend* fe, const void* data, size_t n_bytes, int32_t encoding) {
  return Guard([&]() -> spoof_status {
    if (fe == nullptr) return Null("spoof_frontend_push", "fe");
    if (data == nullptr && n_bytes > 0) return Null("spoof_frontend_push", "data");
    if (n_bytes > SPOOF_MAX_PUSH_BYTES) {
      return Failf(SPOOF_ERR_INVALID_ARGUMENT,
                   "spoof_frontend_push: a push carries at most %zu bytes (SPOOF_MAX_PUSH_BYTES); got %zu",
                   SPOOF_MAX_PUSH_BYTES, n_bytes);
    }
    fe->impl.Push(static_cast<const uint8_t*>(data), static_cast<int64_t>(n_bytes), encoding);
    return SPOOF_OK;
  });
}

spoof_status spoof_frontend_push_float(spoof_frontend* fe, const float* samples, size_t n) {
  return Guard([&]() -> spoof_status {
    if (fe == nullptr) return Null("spoof_frontend_push_float", "fe");
    if (samples == nullptr && n > 0) return Null("spoof_frontend_push_float", "samples");
    if (n > SPOOF_MAX_PUSH_SAMPLES) {
      return Failf(SPOOF_ERR_INVALID_ARGUMENT,
                   "spoof_frontend_push_float: a push carries at most %zu samples (SPOOF_MAX_PUSH_SAMPLES); got %zu",
                   SPOOF_MAX_PUSH_SAMPLES, n);
    }
    fe->impl.PushFloat(samples, static_cast<int64_t>(n));
    return SPOOF_OK;
  });
}

spoof_status spoof_frontend_next_window(spoof_frontend* fe, float* out, size_t out_capacity,
                                        spoof_window_info* info, int32_t* has_window) {
  return Guard([&]() -> spoof_status {
    if (fe == nullptr) return Null("spoof_frontend_next_window", "fe");
    if (out == nullptr) return Null("spoof_frontend_next_window", "out");
    if (info == nullptr) return Null("spoof_frontend_next_window", "info");
    if (has_window == nullptr) return Null("spoof_frontend_next_window", "has_window");
    const int64_t cap = out_capacity > static_cast<size_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(out_capacity);
    spoof_window_info tmp{};
    const bool has = fe->impl.NextWindow(out, cap, &tmp);
    if (has) *info = tmp;
    *has_window = has ? 1 : 0;
    return SPOOF_OK;
  });
}

spoof_status spoof_frontend_flush(spoof_frontend* fe) {
  return Guard([&]() -> spoof_status {
    if (fe == nullptr) return Null("spoof_frontend_flush", "fe");
    fe->impl.Flush();
    return SPOOF_OK;
  });
}

spoof_status spoof_frontend_reset(spoof_frontend* fe) {
  return Guard([&]() -> spoof_status {
    if (fe == nullptr) return Null("spoof_frontend_reset", "fe");
    fe->impl.Reset();
    return SPOOF_OK;
  });
}

spoof_status spoof_frontend_get_stats(const spoof_frontend* fe, spoof_frontend_stats* stats) {
  return Guard([&]() -> spoof_status {
    if (fe == nullptr) return Null("spoof_frontend_get_stats", "fe");
    if (stats == nullptr) return Null("spoof_frontend_get_stats", "stats");
    constexpr size_t kMinSize = offsetof(spoof_frontend_stats, samples_in) + sizeof(int64_t);
    if (stats->struct_size < kMinSize) {
      return Failf(SPOOF_ERR_INVALID_ARGUMENT,
                   "spoof_frontend_get_stats: stats->struct_size must be set to sizeof(spoof_frontend_stats); "
                   "expected >= %zu, got %zu",
                   kMinSize, stats->struct_size);
    }
    spoof_frontend_stats full{};
    fe->impl.GetStats(&full);
    const size_t keep = stats->struct_size;
    full.struct_size = keep;
    std::memcpy(stats, &full, std::min(keep, sizeof(full)));
    return SPOOF_OK;
  });
}

spoof_status spoof_ring_create(int64_t capacity, int32_t overflow_policy, spoof_ring** out) {
  return Guard([&]() -> spoof_status {
    if (out == nullptr) return Null("spoof_ring_create", "out");
    *out = new spoof_ring(capacity, overflow_policy);
    return SPOOF_OK;
  });
}

void spoof_ring_destroy(spoof_ring* ring) { delete ring; }

spoof_status spoof_ring_push(spoof_ring* ring, const float* samples, int64_t n) {
  return Guard([&]() -> spoof_status {
    if (ring == nullptr) return Null("spoof_ring_push", "ring");
    if (samples == nullptr && n > 0) return Null("spoof_ring_push", "samples");
    if (n < 0) {
      return Failf(SPOOF_ERR_INVALID_ARGUMENT, "spoof_ring_push: n must be >= 0; got %lld",
                   static_cast<long long>(n));
    }
    int64_t bad = 0;
    if (!spoof::core::AllFinite(samples, n, &bad)) {
      return Failf(SPOOF_ERR_INVALID_AUDIO, "spoof_ring_push: samples must be finite; sample %lld is not",
                   static_cast<long long>(bad));
    }
    auto& r = ring->impl;
    const spoof_status st = r.Push(samples, n);
    if (st == SPOOF_ERR_OVERFLOW) {
      return Failf(st,
                   "spoof_ring_push: %lld samples do not fit: %lld of capacity %lld are free (overflow policy "
                   "'error'; nothing was written)",
                   static_cast<long long>(n), static_cast<long long>(r.FreeSpace()),
                   static_cast<long long>(r.capacity()));
    }
    return st;
  });
}

spoof_status spoof_ring_read(const spoof_ring* ring, int64_t start, float* out, int64_t n) {
  return Guard([&]() -> spoof_status {
    if (ring == nullptr) return Null("spoof_ring_read", "ring");
    if (out == nullptr && n > 0) return Null("spoof_ring_read", "out");
    const auto& r = ring->impl;
    if (n < 0) {
      return Failf(SPOOF_ERR_INVALID_ARGUMENT, "spoof_ring_read: n must be >= 0; got %lld",
                   static_cast<long long>(n));
    }
    const spoof_status st = r.Read(start, out, n);
    if (st == SPOOF_ERR_INVALID_ARGUMENT) {
      return Failf(st, "spoof_ring_read: range [%lld, %lld) must lie within [head, tail) = [%lld, %lld)",
                   static_cast<long long>(start), static_cast<long long>(start + n),
                   static_cast<long long>(r.head()), static_cast<long long>(r.tail()));
    }
    if (st == SPOOF_ERR_OVERFLOW) {
      return Failf(st, "spoof_ring_read: samples from %lld were overwritten (dropped) during the read; head is now %lld",
                   static_cast<long long>(start), static_cast<long long>(r.head()));
    }
    return st;
  });
}

spoof_status spoof_ring_consume(spoof_ring* ring, int64_t new_head) {
  return Guard([&]() -> spoof_status {
    if (ring == nullptr) return Null("spoof_ring_consume", "ring");
    auto& r = ring->impl;
    const spoof_status st = r.Consume(new_head);
    if (st != SPOOF_OK) {
      return Failf(st, "spoof_ring_consume: new_head must be in [head, tail] = [%lld, %lld]; got %lld",
                   static_cast<long long>(r.head()), static_cast<long long>(r.tail()),
                   static_cast<long long>(new_head));
    }
    return st;
  });
}

spoof_status spoof_ring_pop(spoof_ring* ring, float* out, int64_t max_n, int64_t* start, int64_t* n_out) {
  return Guard([&]() -> spoof_status {
    if (ring == nullptr) return Null("spoof_ring_pop", "ring");
    if (out == nullptr && max_n > 0) return Null("spoof_ring_pop", "out");
    if (start == nullptr) return Null("spoof_ring_pop", "start");
    if (n_out == nullptr) return Null("spoof_ring_pop", "n_out");
    if (max_n < 0) {
      return Failf(SPOOF_ERR_INVALID_ARGUMENT, "spoof_ring_pop: max_n must be >= 0; got %lld",
                   static_cast<long long>(max_n));
    }
    ring->impl.Pop(out, max_n, start, n_out);
    return SPOOF_OK;
  });
}

int64_t spoof_ring_head(const spoof_ring* ring) { return ring ? ring->impl.head() : -1; }
int64_t spoof_ring_tail(const spoof_ring* ring) { return ring ? ring->impl.tail() : -1; }
int64_t spoof_ring_dropped(const spoof_ring* ring) { return ring ? ring->impl.dropped() : -1; }
int64_t spoof_ring_capacity(const spoof_ring* ring) { return ring ? ring->impl.capacity() : -1; }

}  // extern "C"
