/*
 * spoof.h - the stable C ABI of libspoof, spoofsdk's native audio front end.
 *
 * The front end turns encoded PCM bytes (as they arrive from a call: split anywhere)
 * into fixed-length float32 windows at the model sample rate:
 *
 *     bytes -> decode (PCM16 LE / float32 LE / G.711 mu-law / A-law)
 *           -> streaming resample to the model rate (state carried across pushes)
 *           -> ring buffer (absolute int64 sample indices, fixed capacity)
 *           -> windows of `window_samples` every `hop_samples`
 *
 * Usage:
 *
 *     spoof_frontend_options opts;
 *     spoof_frontend_options_init(&opts);          // defaults, sets struct_size
 *     opts.input_sample_rate = 8000;
 *     spoof_frontend* fe = NULL;
 *     if (spoof_frontend_create(&opts, &fe) != SPOOF_OK) { puts(spoof_last_error()); ... }
 *     spoof_frontend_push(fe, bytes, n, SPOOF_ENCODING_MULAW);
 *     spoof_window_info info; int has = 0;
 *     while (spoof_frontend_next_window(fe, buf, buf_len, &info, &has) == SPOOF_OK && has) { ... }
 *     spoof_frontend_flush(fe);                    // end of stream: tail windows become ready
 *     ... drain next_window again ...
 *     spoof_frontend_destroy(fe);                  // NULL-safe
 *
 * Ownership: every object created by spoof_*_create is owned by the caller and released
 * with the matching spoof_*_destroy. Buffers passed in are borrowed for the duration of
 * the call only. Strings returned by the library are owned by the library.
 *
 * Errors: every function that can fail returns a spoof_status. On failure the
 * out-parameters are left untouched (or set to NULL/0 where documented) and a message
 * describing what was expected and what was given is available from spoof_last_error()
 * on the *same thread* until the next failing call on that thread. No function aborts,
 * exits or throws across this boundary, whatever the input.
 *
 * Threading: distinct objects may be used from distinct threads freely. One frontend may
 * be used by one producer thread (push, push_float, flush) and one consumer thread
 * (next_window) at the same time (single-producer / single-consumer, lock-free);
 * get_stats may be called from either; reset and destroy need external synchronisation.
 * A ring buffer likewise admits one writer and one reader concurrently.
 *
 * Versioning: SPOOF_ABI_VERSION is bumped on any incompatible change; functions and
 * enum values are only ever added. Options structs start with struct_size so that new
 * fields can be appended: a caller built against an older header passes a smaller
 * struct_size and the library uses defaults for the fields it did not provide.
 */
#ifndef SPOOF_SPOOF_H_
#define SPOOF_SPOOF_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(SPOOF_BUILD_MAIN_LIB)
#    define SPOOF_API __declspec(dllexport)
#  else
#    define SPOOF_API __declspec(dllimport)
#  endif
#else
#  define SPOOF_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SPOOF_ABI_VERSION 1

/* Limits. A push larger than these is SPOOF_ERR_INVALID_ARGUMENT (split it), never an
 * out-of-memory crash. Ring buffer / frontend capacities are at most 2^28 samples. */
#define SPOOF_MAX_PUSH_BYTES ((size_t)1 << 26)   /* 64 MiB per spoof_frontend_push */
#define SPOOF_MAX_PUSH_SAMPLES ((size_t)1 << 24) /* per spoof_frontend_push_float */
#define SPOOF_MAX_CAPACITY_SAMPLES ((int64_t)1 << 28)
#define SPOOF_MIN_SAMPLE_RATE 1000
#define SPOOF_MAX_SAMPLE_RATE 384000

/* ---- status codes -------------------------------------------------------------- */
typedef enum spoof_status {
  SPOOF_OK = 0,
  SPOOF_ERR_INVALID_ARGUMENT = 1, /* NULL pointer, size <= 0, unknown enum, bad option */
  SPOOF_ERR_INVALID_AUDIO = 2,    /* NaN / Inf samples, misaligned float32 data */
  SPOOF_ERR_OVERFLOW = 3,         /* ring buffer full under SPOOF_OVERFLOW_ERROR; nothing written */
  SPOOF_ERR_BUFFER_TOO_SMALL = 4, /* caller's output buffer cannot hold the result */
  SPOOF_ERR_STATE = 5,            /* call not valid now (e.g. push after flush without reset) */
  SPOOF_ERR_OUT_OF_MEMORY = 6,
  SPOOF_ERR_INTERNAL = 7
} spoof_status;

/* ---- enums --------------------------------------------------------------------- */
typedef enum spoof_encoding {
  SPOOF_ENCODING_PCM16 = 1,   /* signed 16-bit little-endian, x / 32768 */
  SPOOF_ENCODING_FLOAT32 = 2, /* IEEE-754 float32 little-endian; must be finite */
  SPOOF_ENCODING_MULAW = 3,   /* ITU-T G.711 mu-law, one byte per sample */
  SPOOF_ENCODING_ALAW = 4     /* ITU-T G.711 A-law, one byte per sample */
} spoof_encoding;

typedef enum spoof_overflow_policy {
  SPOOF_OVERFLOW_ERROR = 0,      /* a push that does not fit fails with SPOOF_ERR_OVERFLOW and writes nothing */
  SPOOF_OVERFLOW_DROP_OLDEST = 1 /* the oldest unread samples are discarded and counted */
} spoof_overflow_policy;

/* ---- library ------------------------------------------------------------------- */
SPOOF_API int32_t spoof_abi_version(void);
SPOOF_API const char* spoof_version_string(void);
/* The message of the last failed call on this thread ("" if none). Never NULL. */
SPOOF_API const char* spoof_last_error(void);
/* A static English name for a status code ("SPOOF_ERR_OVERFLOW"); never NULL. */
SPOOF_API const char* spoof_status_name(spoof_status status);

/* ---- one-shot helpers ---------------------------------------------------------- */
/* Decode n_bytes of `encoding` into float32 in [-1, 1]. n_bytes must be a whole number
 * of samples (else SPOOF_ERR_INVALID_ARGUMENT). *n_out receives the number of samples; out
 * must hold out_capacity floats (else SPOOF_ERR_BUFFER_TOO_SMALL). data/out may be NULL only
 * when n_bytes == 0. G.711 decodes exactly as libsndfile does (16-bit value / 32768). */
SPOOF_API spoof_status spoof_decode(const void* data, size_t n_bytes, int32_t encoding, float* out,
                                    size_t out_capacity, size_t* n_out);

/* Number of samples spoof_resample writes for n_in input samples: ceil(n_in * out_sr / in_sr). */
SPOOF_API spoof_status spoof_resample_output_length(int64_t n_in, int32_t in_sr, int32_t out_sr,
                                                    int64_t* n_out);
/* Offline resampling with no start-up delay: output sample k is aligned with input time
 * k / out_sr. Rates in [1000, 384000]; input must be finite (else SPOOF_ERR_INVALID_AUDIO).
 * Equal to the front end's streaming resampler fed the same samples and flushed;
 * in_sr == out_sr copies exactly. Filter: Kaiser-windowed sinc, passband to 0.45 x the
 * lower rate; downsampling: >= 70 dB stopband from the output Nyquist; upsampling:
 * half-band, images of content below 0.45 x the input rate >= 70 dB down. */
SPOOF_API spoof_status spoof_resample(const float* in, int64_t n_in, int32_t in_sr, int32_t out_sr,
                                      float* out, int64_t out_capacity, int64_t* n_out);

/* ---- front end ----------------------------------------------------------------- */
typedef struct spoof_frontend spoof_frontend;

typedef struct spoof_frontend_options {
  size_t struct_size;        /* sizeof(spoof_frontend_options); set by spoof_frontend_options_init */
  int32_t input_sample_rate; /* rate of the pushed audio, [1000, 384000]; default 16000 */
  int32_t model_sample_rate; /* rate of the windows, [1000, 384000]; default 16000 */
  int64_t window_samples;    /* window length at the model rate, > 0; default 64000 (4 s) */
  int64_t hop_samples;       /* 0 < hop <= window; default 32000 (2 s) */
  int64_t capacity_samples;  /* ring buffer capacity at the model rate, in [window_samples + hop_samples,
                                SPOOF_MAX_CAPACITY_SAMPLES]; 0 = default (4 x window_samples).
                                Under SPOOF_OVERFLOW_ERROR a push adding at most
                                capacity - window_samples model-rate samples always fits
                                once next_window has returned no window. */
  int32_t overflow_policy;   /* spoof_overflow_policy; default SPOOF_OVERFLOW_ERROR */
  int32_t encoding;          /* default encoding of pushes, spoof_encoding; default SPOOF_ENCODING_PCM16 */
} spoof_frontend_options;

typedef struct spoof_window_info {
  int64_t start_index; /* absolute index (model rate) of the window's first sample */
  int64_t n_samples;   /* samples written to the caller's buffer */
  int32_t is_final;    /* 1 for the window produced by flush's tail rule, else 0 */
  int32_t reserved;
} spoof_window_info;

typedef struct spoof_frontend_stats {
  size_t struct_size;
  int64_t samples_in;       /* input samples decoded so far (input rate) */
  int64_t samples_out;      /* samples written to the ring buffer (model rate) = absolute write index */
  int64_t samples_dropped;  /* samples discarded by SPOOF_OVERFLOW_DROP_OLDEST */
  int64_t windows_emitted;
  int64_t pending_bytes;    /* bytes of an incomplete sample waiting for their partner bytes */
  int64_t buffered_samples; /* samples held in the ring buffer */
  int64_t discarded_bytes;  /* bytes of an incomplete final sample discarded by flush */
} spoof_frontend_stats;

SPOOF_API void spoof_frontend_options_init(spoof_frontend_options* opts);
SPOOF_API spoof_status spoof_frontend_create(const spoof_frontend_options* opts, spoof_frontend** out);
SPOOF_API void spoof_frontend_destroy(spoof_frontend* fe); /* NULL-safe */

/* Append n_bytes of audio. Bytes may be split anywhere: an incomplete trailing sample is
 * kept until the next push. n_bytes == 0 is a no-op. `encoding` must equal the one the
 * pending partial sample (if any) was pushed with; 0 means the options' encoding.
 * n_bytes <= SPOOF_MAX_PUSH_BYTES. Fails with SPOOF_ERR_STATE after flush. A push is
 * all-or-nothing: on any error (bad float, ring full under SPOOF_OVERFLOW_ERROR, ...) the
 * front end is unchanged, including its pending bytes. */
SPOOF_API spoof_status spoof_frontend_push(spoof_frontend* fe, const void* data, size_t n_bytes,
                                           int32_t encoding);
/* Append float32 samples at the input rate (no decoding; must be finite; n <=
 * SPOOF_MAX_PUSH_SAMPLES; not while bytes of an incomplete sample are pending). */
SPOOF_API spoof_status spoof_frontend_push_float(spoof_frontend* fe, const float* samples, size_t n);

/* If a window is ready, copy it into out (capacity >= window_samples, else
 * SPOOF_ERR_BUFFER_TOO_SMALL), fill *info and set *has_window = 1; otherwise set
 * *has_window = 0. Returns SPOOF_OK in both cases. Regular windows start at 0, hop,
 * 2 hop, ...; under SPOOF_OVERFLOW_DROP_OLDEST windows whose start was dropped are skipped
 * (start_index jumps; samples_dropped counts the loss). A short final window is
 * zero-padded in out beyond info->n_samples. */
SPOOF_API spoof_status spoof_frontend_next_window(spoof_frontend* fe, float* out, size_t out_capacity,
                                                  spoof_window_info* info, int32_t* has_window);

/* End of stream. Drains the resampler (output then totals ceil(n_in * model / input)
 * samples), discards the bytes of an incomplete final sample (stats.discarded_bytes),
 * then applies the tail rule when next_window has returned every regular window:
 *  - no window emitted yet and >= 1 sample buffered: one final window with all samples
 *    (n_samples < window_samples, start_index 0);
 *  - windows emitted and the last one ends before the last sample: one final window of
 *    window_samples ending at the last sample (start = total - window_samples);
 *  - otherwise nothing.
 * Afterwards push fails with SPOOF_ERR_STATE until spoof_frontend_reset. Flushing twice
 * is a no-op. Under SPOOF_OVERFLOW_ERROR, if the resampler's tail does not fit in the
 * ring, flush writes what fits and fails with SPOOF_ERR_OVERFLOW (push is already refused):
 * drain windows with next_window and call flush again until it returns SPOOF_OK. */
SPOOF_API spoof_status spoof_frontend_flush(spoof_frontend* fe);
/* Back to the freshly created state (indices restart at 0, counters cleared). */
SPOOF_API spoof_status spoof_frontend_reset(spoof_frontend* fe);
/* stats->struct_size must be set by the caller (sizeof(spoof_frontend_stats)); only the
 * fields that fit in it are written. Safe to call from the producer or consumer thread. */
SPOOF_API spoof_status spoof_frontend_get_stats(const spoof_frontend* fe, spoof_frontend_stats* stats);

/* ---- ring buffer (exposed for hosts that do their own framing) ------------------ */
/* Absolute indices: head = oldest held sample, tail = one past the newest; both only grow.
 * Capacity in [1, SPOOF_MAX_CAPACITY_SAMPLES]. One writer (push) and one reader (read,
 * consume, pop) may run concurrently without locks. Under SPOOF_OVERFLOW_DROP_OLDEST the
 * writer advances head past the samples it overwrites and adds exactly that count to
 * dropped, so every index below tail is consumed by the reader or counted as dropped,
 * once (pop never returns a sample that is also counted as dropped). */
typedef struct spoof_ring spoof_ring;

SPOOF_API spoof_status spoof_ring_create(int64_t capacity, int32_t overflow_policy, spoof_ring** out);
SPOOF_API void spoof_ring_destroy(spoof_ring* ring); /* NULL-safe */
SPOOF_API spoof_status spoof_ring_push(spoof_ring* ring, const float* samples, int64_t n);
/* Copy n samples starting at absolute index `start` (head <= start, start + n <= tail,
 * else SPOOF_ERR_INVALID_ARGUMENT). SPOOF_ERR_OVERFLOW if a concurrent drop_oldest writer
 * overwrote part of the range during the copy. */
SPOOF_API spoof_status spoof_ring_read(const spoof_ring* ring, int64_t start, float* out, int64_t n);
/* Release samples before absolute index `new_head` (head <= new_head <= tail). Under
 * drop_oldest, new_head < head is a no-op (the writer may have dropped past it). */
SPOOF_API spoof_status spoof_ring_consume(spoof_ring* ring, int64_t new_head);
/* Copy and release up to max_n of the oldest samples: *start = index of out[0],
 * *n_out = count (0 when empty). */
SPOOF_API spoof_status spoof_ring_pop(spoof_ring* ring, float* out, int64_t max_n, int64_t* start,
                                      int64_t* n_out);
SPOOF_API int64_t spoof_ring_head(const spoof_ring* ring);    /* oldest held index; -1 if ring is NULL */
SPOOF_API int64_t spoof_ring_tail(const spoof_ring* ring);    /* one past the newest; -1 if NULL */
SPOOF_API int64_t spoof_ring_dropped(const spoof_ring* ring); /* -1 if NULL */
SPOOF_API int64_t spoof_ring_capacity(const spoof_ring* ring); /* -1 if NULL */

/* Reserved for C-level inference in a later ABI version: spoof_detector_*, spoof_session_*. */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPOOF_SPOOF_H_ */
