/* C99 test of libspoof's C ABI: lifecycle, status codes, messages, NULL arguments,
 * struct_size compatibility, the ring buffer. Built by ctest (SPOOF_BUILD_TESTS) and
 * compiled + run by tests/native/test_c_program.py with the system C compiler against the
 * installed header and library. Exit code 0 = pass. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spoof/spoof.h"

static int failures = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: '%s')\n", __FILE__, __LINE__, #cond, \
              spoof_last_error());                                                  \
      ++failures;                                                                   \
    }                                                                               \
  } while (0)

#define CHECK_STATUS(expr, want)                                                    \
  do {                                                                              \
    spoof_status st_ = (expr);                                                      \
    if (st_ != (want)) {                                                            \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: '%s')\n", __FILE__, __LINE__, \
              #expr, spoof_status_name(st_), spoof_status_name(want), spoof_last_error()); \
      ++failures;                                                                   \
    }                                                                               \
  } while (0)

static int contains(const char* haystack, const char* needle) { return strstr(haystack, needle) != NULL; }

static void test_library(void) {
  CHECK(spoof_abi_version() == SPOOF_ABI_VERSION);
  CHECK(spoof_version_string() != NULL && strlen(spoof_version_string()) > 0);
  CHECK(strcmp(spoof_status_name(SPOOF_ERR_OVERFLOW), "SPOOF_ERR_OVERFLOW") == 0);
  CHECK(strcmp(spoof_status_name((spoof_status)99), "SPOOF_ERR_UNKNOWN") == 0);
  CHECK(spoof_last_error() != NULL);
}

static void test_decode(void) {
  const unsigned char pcm[4] = {0x00, 0x80, 0xff, 0x7f}; /* -32768, 32767 */
  float out[4];
  size_t n = 0;
  CHECK_STATUS(spoof_decode(pcm, 4, SPOOF_ENCODING_PCM16, out, 4, &n), SPOOF_OK);
  CHECK(n == 2 && out[0] == -1.0f && out[1] == 32767.0f / 32768.0f);
  CHECK_STATUS(spoof_decode(pcm, 3, SPOOF_ENCODING_PCM16, out, 4, &n), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK(contains(spoof_last_error(), "multiple of 2"));
  CHECK_STATUS(spoof_decode(pcm, 4, 42, out, 4, &n), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK(contains(spoof_last_error(), "got 42"));
  CHECK_STATUS(spoof_decode(NULL, 4, SPOOF_ENCODING_MULAW, out, 4, &n), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK(contains(spoof_last_error(), "data must not be NULL"));
  CHECK_STATUS(spoof_decode(pcm, 4, SPOOF_ENCODING_MULAW, out, 3, &n), SPOOF_ERR_BUFFER_TOO_SMALL);
  CHECK_STATUS(spoof_decode(pcm, 4, SPOOF_ENCODING_MULAW, out, 4, NULL), SPOOF_ERR_INVALID_ARGUMENT);
  {
    float bad[2] = {0.5f, 0.0f};
    bad[1] = (float)INFINITY;
    CHECK_STATUS(spoof_decode(bad, sizeof(bad), SPOOF_ENCODING_FLOAT32, out, 4, &n), SPOOF_ERR_INVALID_AUDIO);
    CHECK(contains(spoof_last_error(), "sample 1 is +Inf"));
  }
  /* G.711 reference values (ITU-T G.711, libsndfile tables): */
  {
    const unsigned char codes[4] = {0x00, 0x80, 0xff, 0x55};
    CHECK_STATUS(spoof_decode(codes, 4, SPOOF_ENCODING_MULAW, out, 4, &n), SPOOF_OK);
    CHECK(out[0] == -32124.0f / 32768.0f && out[1] == 32124.0f / 32768.0f && out[2] == 0.0f);
    CHECK_STATUS(spoof_decode(codes, 4, SPOOF_ENCODING_ALAW, out, 4, &n), SPOOF_OK);
    CHECK(out[0] == -5504.0f / 32768.0f && out[1] == 5504.0f / 32768.0f && out[3] == -8.0f / 32768.0f);
  }
}

static void test_resample(void) {
  int64_t n = -1;
  float in[100], out[400];
  int i;
  for (i = 0; i < 100; ++i) in[i] = (float)sin(0.1 * i) * 0.5f;
  CHECK_STATUS(spoof_resample_output_length(100, 8000, 16000, &n), SPOOF_OK);
  CHECK(n == 200);
  CHECK_STATUS(spoof_resample_output_length(3, 44100, 16000, &n), SPOOF_OK);
  CHECK(n == 2); /* ceil(3 * 160 / 441) */
  CHECK_STATUS(spoof_resample_output_length(10, 0, 16000, &n), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK(contains(spoof_last_error(), "got 0"));
  CHECK_STATUS(spoof_resample_output_length(10, 16000, 1000000000, &n), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_resample_output_length(-1, 16000, 8000, &n), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_resample(in, 100, 8000, 16000, out, 199, &n), SPOOF_ERR_BUFFER_TOO_SMALL);
  CHECK_STATUS(spoof_resample(in, 100, 8000, 16000, out, 400, &n), SPOOF_OK);
  CHECK(n == 200);
  for (i = 0; i < 100; ++i) CHECK(out[2 * i] == in[i]); /* half-band 2x: even outputs are the input */
  CHECK_STATUS(spoof_resample(in, 100, 16000, 16000, out, 400, &n), SPOOF_OK);
  CHECK(n == 100 && memcmp(in, out, sizeof(in)) == 0);
  CHECK_STATUS(spoof_resample(NULL, 100, 8000, 16000, out, 400, &n), SPOOF_ERR_INVALID_ARGUMENT);
  in[7] = (float)NAN;
  CHECK_STATUS(spoof_resample(in, 100, 8000, 16000, out, 400, &n), SPOOF_ERR_INVALID_AUDIO);
}

static void test_frontend(void) {
  spoof_frontend_options opts;
  spoof_frontend* fe = NULL;
  spoof_window_info info;
  spoof_frontend_stats stats;
  int32_t has = 0;
  float* win;
  unsigned char bytes[16000];
  int i, windows = 0, finals = 0;

  spoof_frontend_options_init(&opts);
  CHECK(opts.struct_size == sizeof(opts) && opts.model_sample_rate == 16000 && opts.window_samples == 64000);
  opts.input_sample_rate = 8000;
  opts.window_samples = 16000;
  opts.hop_samples = 8000;
  opts.encoding = SPOOF_ENCODING_MULAW;
  CHECK_STATUS(spoof_frontend_create(&opts, &fe), SPOOF_OK);
  CHECK(fe != NULL);
  win = (float*)malloc(sizeof(float) * 16000);
  for (i = 0; i < 16000; ++i) bytes[i] = (unsigned char)(i * 37);
  /* 1.5 s of 8 kHz mu-law in 20 ms packets -> 24000 samples at 16 kHz. */
  for (i = 0; i < 12000; i += 160) CHECK_STATUS(spoof_frontend_push(fe, bytes + i, 160, 0), SPOOF_OK);
  CHECK_STATUS(spoof_frontend_next_window(fe, win, 15999, &info, &has), SPOOF_ERR_BUFFER_TOO_SMALL);
  for (;;) {
    CHECK_STATUS(spoof_frontend_next_window(fe, win, 16000, &info, &has), SPOOF_OK);
    if (!has) break;
    CHECK(info.start_index == (int64_t)windows * 8000 && info.n_samples == 16000 && !info.is_final);
    ++windows;
  }
  CHECK(windows == 1);
  CHECK_STATUS(spoof_frontend_flush(fe), SPOOF_OK);
  CHECK_STATUS(spoof_frontend_flush(fe), SPOOF_OK); /* idempotent */
  for (;;) {
    CHECK_STATUS(spoof_frontend_next_window(fe, win, 16000, &info, &has), SPOOF_OK);
    if (!has) break;
    if (info.is_final) {
      ++finals;
      CHECK(info.start_index == 24000 - 16000 && info.n_samples == 16000);
    } else {
      CHECK(info.start_index == (int64_t)windows * 8000);
      ++windows;
    }
  }
  CHECK(windows == 2 && finals == 0); /* 24000 = 8000 + 16000: the last regular window ends exactly */
  CHECK_STATUS(spoof_frontend_push(fe, bytes, 10, 0), SPOOF_ERR_STATE);
  CHECK(contains(spoof_last_error(), "after flush"));
  memset(&stats, 0, sizeof(stats));
  stats.struct_size = sizeof(stats);
  CHECK_STATUS(spoof_frontend_get_stats(fe, &stats), SPOOF_OK);
  CHECK(stats.samples_in == 12000 && stats.samples_out == 24000 && stats.windows_emitted == 2);
  CHECK(stats.samples_dropped == 0 && stats.pending_bytes == 0);

  /* reset: a short stream gives one final, zero-padded window */
  CHECK_STATUS(spoof_frontend_reset(fe), SPOOF_OK);
  CHECK_STATUS(spoof_frontend_push(fe, bytes, 100, SPOOF_ENCODING_MULAW), SPOOF_OK);
  CHECK_STATUS(spoof_frontend_flush(fe), SPOOF_OK);
  CHECK_STATUS(spoof_frontend_next_window(fe, win, 16000, &info, &has), SPOOF_OK);
  CHECK(has == 1 && info.is_final == 1 && info.start_index == 0 && info.n_samples == 200);
  CHECK(win[200] == 0.0f && win[15999] == 0.0f);
  CHECK_STATUS(spoof_frontend_next_window(fe, win, 16000, &info, &has), SPOOF_OK);
  CHECK(has == 0);

  /* pcm16 split at an odd offset; a mismatching encoding for the pending byte is refused */
  CHECK_STATUS(spoof_frontend_reset(fe), SPOOF_OK);
  CHECK_STATUS(spoof_frontend_push(fe, bytes, 3, SPOOF_ENCODING_PCM16), SPOOF_OK);
  stats.struct_size = sizeof(stats);
  CHECK_STATUS(spoof_frontend_get_stats(fe, &stats), SPOOF_OK);
  CHECK(stats.pending_bytes == 1 && stats.samples_in == 1);
  CHECK_STATUS(spoof_frontend_push(fe, bytes, 3, SPOOF_ENCODING_MULAW), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK(contains(spoof_last_error(), "pending"));
  CHECK_STATUS(spoof_frontend_push(fe, bytes + 3, 1, SPOOF_ENCODING_PCM16), SPOOF_OK);
  CHECK_STATUS(spoof_frontend_get_stats(fe, &stats), SPOOF_OK);
  CHECK(stats.pending_bytes == 0 && stats.samples_in == 2);

  /* NULL arguments */
  CHECK_STATUS(spoof_frontend_push(NULL, bytes, 10, 0), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK(contains(spoof_last_error(), "fe must not be NULL"));
  CHECK_STATUS(spoof_frontend_push(fe, NULL, 10, 0), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_frontend_push(fe, NULL, 0, 0), SPOOF_OK);
  CHECK_STATUS(spoof_frontend_push(fe, bytes, (size_t)1 << 40, 0), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK(contains(spoof_last_error(), "SPOOF_MAX_PUSH_BYTES"));
  CHECK_STATUS(spoof_frontend_next_window(fe, NULL, 16000, &info, &has), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_frontend_next_window(fe, win, 16000, NULL, &has), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_frontend_next_window(fe, win, 16000, &info, NULL), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_frontend_flush(NULL), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_frontend_reset(NULL), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_frontend_get_stats(fe, NULL), SPOOF_ERR_INVALID_ARGUMENT);
  stats.struct_size = 0;
  CHECK_STATUS(spoof_frontend_get_stats(fe, &stats), SPOOF_ERR_INVALID_ARGUMENT);
  spoof_frontend_destroy(fe);
  spoof_frontend_destroy(NULL);
  free(win);
}

static void test_bad_options(void) {
  spoof_frontend_options opts;
  spoof_frontend* fe = NULL;
  const int32_t bad_rates[3] = {0, -1, 1000000000};
  int i;
  for (i = 0; i < 3; ++i) {
    spoof_frontend_options_init(&opts);
    opts.input_sample_rate = bad_rates[i];
    CHECK_STATUS(spoof_frontend_create(&opts, &fe), SPOOF_ERR_INVALID_ARGUMENT);
    CHECK(contains(spoof_last_error(), "input_sample_rate must be in [1000, 384000]"));
    CHECK(fe == NULL);
  }
  spoof_frontend_options_init(&opts);
  opts.hop_samples = opts.window_samples + 1;
  CHECK_STATUS(spoof_frontend_create(&opts, &fe), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK(contains(spoof_last_error(), "hop_samples"));
  spoof_frontend_options_init(&opts);
  opts.window_samples = 0;
  CHECK_STATUS(spoof_frontend_create(&opts, &fe), SPOOF_ERR_INVALID_ARGUMENT);
  spoof_frontend_options_init(&opts);
  opts.window_samples = -5;
  CHECK_STATUS(spoof_frontend_create(&opts, &fe), SPOOF_ERR_INVALID_ARGUMENT);
  spoof_frontend_options_init(&opts);
  opts.capacity_samples = opts.window_samples + opts.hop_samples - 1;
  CHECK_STATUS(spoof_frontend_create(&opts, &fe), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK(contains(spoof_last_error(), "capacity_samples"));
  spoof_frontend_options_init(&opts);
  opts.overflow_policy = 7;
  CHECK_STATUS(spoof_frontend_create(&opts, &fe), SPOOF_ERR_INVALID_ARGUMENT);
  spoof_frontend_options_init(&opts);
  opts.encoding = 0;
  CHECK_STATUS(spoof_frontend_create(&opts, &fe), SPOOF_ERR_INVALID_ARGUMENT);
  spoof_frontend_options_init(&opts);
  opts.struct_size = 0;
  CHECK_STATUS(spoof_frontend_create(&opts, &fe), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK(contains(spoof_last_error(), "struct_size"));
  CHECK_STATUS(spoof_frontend_create(NULL, &fe), SPOOF_ERR_INVALID_ARGUMENT);
  spoof_frontend_options_init(&opts);
  CHECK_STATUS(spoof_frontend_create(&opts, NULL), SPOOF_ERR_INVALID_ARGUMENT);
  /* An older caller whose struct ends after hop_samples: the rest takes defaults. */
  spoof_frontend_options_init(&opts);
  opts.struct_size = offsetof(spoof_frontend_options, hop_samples) + sizeof(int64_t);
  opts.capacity_samples = 1; /* beyond struct_size: must be ignored */
  CHECK_STATUS(spoof_frontend_create(&opts, &fe), SPOOF_OK);
  spoof_frontend_destroy(fe);
}

static void test_ring(void) {
  spoof_ring* r = NULL;
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
  int64_t start = -1, n = -1;
  CHECK_STATUS(spoof_ring_create(0, SPOOF_OVERFLOW_ERROR, &r), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_ring_create(4, 3, &r), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_ring_create(4, SPOOF_OVERFLOW_ERROR, NULL), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_ring_create(4, SPOOF_OVERFLOW_ERROR, &r), SPOOF_OK);
  CHECK_STATUS(spoof_ring_push(r, x, 3), SPOOF_OK);
  CHECK_STATUS(spoof_ring_push(r, x, 2), SPOOF_ERR_OVERFLOW);
  CHECK(contains(spoof_last_error(), "nothing was written"));
  CHECK(spoof_ring_tail(r) == 3 && spoof_ring_head(r) == 0);
  CHECK_STATUS(spoof_ring_read(r, 1, out, 2), SPOOF_OK);
  CHECK(out[0] == 2 && out[1] == 3);
  CHECK_STATUS(spoof_ring_read(r, 2, out, 2), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_ring_consume(r, 2), SPOOF_OK);
  CHECK_STATUS(spoof_ring_consume(r, 1), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_ring_consume(r, 9), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_ring_push(r, x + 3, 3), SPOOF_OK); /* wraps around */
  CHECK_STATUS(spoof_ring_pop(r, out, 8, &start, &n), SPOOF_OK);
  CHECK(start == 2 && n == 4 && out[0] == 3 && out[1] == 4 && out[3] == 6);
  x[0] = (float)NAN;
  CHECK_STATUS(spoof_ring_push(r, x, 1), SPOOF_ERR_INVALID_AUDIO);
  CHECK_STATUS(spoof_ring_push(r, x, -1), SPOOF_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(spoof_ring_pop(r, NULL, 1, &start, &n), SPOOF_ERR_INVALID_ARGUMENT);
  spoof_ring_destroy(r);

  CHECK_STATUS(spoof_ring_create(4, SPOOF_OVERFLOW_DROP_OLDEST, &r), SPOOF_OK);
  x[0] = 1;
  CHECK_STATUS(spoof_ring_push(r, x, 6), SPOOF_OK);
  CHECK(spoof_ring_head(r) == 2 && spoof_ring_tail(r) == 6 && spoof_ring_dropped(r) == 2);
  CHECK_STATUS(spoof_ring_read(r, 2, out, 4), SPOOF_OK);
  CHECK(out[0] == 3 && out[3] == 6);
  CHECK_STATUS(spoof_ring_consume(r, 1), SPOOF_OK); /* behind head under drop_oldest: no-op */
  spoof_ring_destroy(r);
  spoof_ring_destroy(NULL);
  CHECK(spoof_ring_head(NULL) == -1 && spoof_ring_tail(NULL) == -1 && spoof_ring_dropped(NULL) == -1 &&
        spoof_ring_capacity(NULL) == -1);
}

int main(void) {
  test_library();
  test_decode();
  test_resample();
  test_frontend();
  test_bad_options();
  test_ring();
  if (failures) {
    fprintf(stderr, "c_api_test: %d check(s) failed\n", failures);
    return 1;
  }
  printf("c_api_test: ok (libspoof %s, ABI %d)\n", spoof_version_string(), (int)spoof_abi_version());
  return 0;
}
