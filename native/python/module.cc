// spoofsdk._native: the pybind11 module over libspoof's C ABI (the same code as libspoof.so).
//
// Inputs are copied into native buffers while the GIL is held; all native work runs with
// the GIL released; output arrays are built after it is re-acquired. Native status codes
// become the exceptions of spoofsdk.errors in one place (RaiseStatus).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "spoof/spoof.h"

namespace py = pybind11;

namespace {

// ---- errors ------------------------------------------------------------------------
[[noreturn]] void RaiseWith(spoof_status status, const std::string& message) {
  py::module_ errors = py::module_::import("spoofsdk.errors");
  const char* name = "NativeError";
  bool native_subclass = true;
  switch (status) {
    case SPOOF_ERR_INVALID_ARGUMENT:
    case SPOOF_ERR_BUFFER_TOO_SMALL:
      name = "InvalidArgumentError";
      native_subclass = false;
      break;
    case SPOOF_ERR_INVALID_AUDIO:
      name = "InvalidAudioError";
      native_subclass = false;
      break;
    case SPOOF_ERR_OVERFLOW:
      name = "BufferOverflowError";
      break;
    case SPOOF_ERR_STATE:
      name = "NativeStateError";
      break;
    default:
      break;
  }
  py::object type = errors.attr(name);
  py::object exc = native_subclass ? type(message, static_cast<int>(status)) : type(message);
  exc.attr("code") = static_cast<int>(status);
  PyErr_SetObject(type.ptr(), exc.ptr());
  throw py::error_already_set();
}

// Must be called with the GIL held, on the thread that made the failing call.
[[noreturn]] void RaiseStatus(spoof_status status) { RaiseWith(status, spoof_last_error()); }

inline void Check(spoof_status status) {
  if (status != SPOOF_OK) RaiseStatus(status);
}

// ---- conversions -------------------------------------------------------------------
const std::pair<const char*, int32_t> kEncodings[] = {
    {"pcm16", SPOOF_ENCODING_PCM16},
    {"float32", SPOOF_ENCODING_FLOAT32},
    {"mulaw", SPOOF_ENCODING_MULAW},
    {"alaw", SPOOF_ENCODING_ALAW},
};

int32_t ParseEncoding(const std::string& s) {
  for (const auto& e : kEncodings) {
    if (s == e.first) return e.second;
  }
  RaiseWith(SPOOF_ERR_INVALID_ARGUMENT,
            "encoding must be one of 'pcm16', 'float32', 'mulaw', 'alaw'; got '" + s + "'");
}

const char* EncodingName(int32_t e) {
  for (const auto& x : kEncodings) {
    if (x.second == e) return x.first;
  }
  return "unknown";
}

int32_t ParsePolicy(const std::string& s) {
  if (s == "error") return SPOOF_OVERFLOW_ERROR;
  if (s == "drop_oldest") return SPOOF_OVERFLOW_DROP_OLDEST;
  RaiseWith(SPOOF_ERR_INVALID_ARGUMENT, "overflow must be 'error' or 'drop_oldest'; got '" + s + "'");
}

int32_t CheckRate(int64_t rate, const char* what) {
  if (rate < SPOOF_MIN_SAMPLE_RATE || rate > SPOOF_MAX_SAMPLE_RATE) {
    RaiseWith(SPOOF_ERR_INVALID_ARGUMENT, std::string(what) + " must be in [" +
                                              std::to_string(SPOOF_MIN_SAMPLE_RATE) + ", " +
                                              std::to_string(SPOOF_MAX_SAMPLE_RATE) + "] Hz; got " +
                                              std::to_string(rate));
  }
  return static_cast<int32_t>(rate);
}

// Copy a bytes-like object (bytes, bytearray, memoryview, any C-contiguous buffer).
std::string CopyBytes(const py::handle& obj, const char* what) {
  if (PyUnicode_Check(obj.ptr())) {
    RaiseWith(SPOOF_ERR_INVALID_ARGUMENT, std::string(what) + " must be bytes-like (bytes, bytearray, memoryview); got str");
  }
  Py_buffer view;
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();
    RaiseWith(SPOOF_ERR_INVALID_ARGUMENT, std::string(what) +
                                              " must be a C-contiguous bytes-like object (bytes, bytearray, "
                                              "memoryview); got " +
                                              std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  std::string out(static_cast<const char*>(view.buf), static_cast<size_t>(view.len));
  PyBuffer_Release(&view);
  return out;
}

// A 1-D floating-point array -> contiguous float32 copy.
std::vector<float> CopyFloats(const py::handle& obj, const char* what) {
  py::array arr = py::array::ensure(obj);
  if (!arr) {
    PyErr_Clear();
    RaiseWith(SPOOF_ERR_INVALID_AUDIO, std::string(what) + " must be a 1-D floating-point numpy array");
  }
  const char kind = arr.dtype().kind();
  if (kind != 'f') {
    RaiseWith(SPOOF_ERR_INVALID_AUDIO, std::string(what) + " must be a 1-D floating-point array (float32 in [-1, 1]); got dtype " +
                                           std::string(py::str(arr.dtype())));
  }
  if (arr.ndim() != 1) {
    RaiseWith(SPOOF_ERR_INVALID_AUDIO,
              std::string(what) + " must be 1-D (mono); got " + std::to_string(arr.ndim()) + " dimensions");
  }
  auto f = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(arr);
  if (!f) throw py::error_already_set();
  return std::vector<float>(f.data(), f.data() + f.size());
}

py::array_t<float> ToNumpy(std::vector<float>&& v) {
  auto* owned = new std::vector<float>(std::move(v));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  const auto n = static_cast<py::ssize_t>(owned->size());
  return py::array_t<float>({n}, {static_cast<py::ssize_t>(sizeof(float))}, owned->data(), owner);
}

// An uninitialised float buffer (no memset of large outputs) handed to numpy without a copy.
struct FloatBuffer {
  std::unique_ptr<float[]> data;
  size_t size = 0;
  explicit FloatBuffer(size_t n) : data(new float[n > 0 ? n : 1]), size(n) {}
};

py::array_t<float> ToNumpy(FloatBuffer&& b) {
  float* raw = b.data.release();
  py::capsule owner(raw, [](void* p) { delete[] static_cast<float*>(p); });
  return py::array_t<float>({static_cast<py::ssize_t>(b.size)}, {static_cast<py::ssize_t>(sizeof(float))}, raw,
                            owner);
}

// ---- module functions ----------------------------------------------------------------
py::array_t<float> Decode(const py::object& data, const std::string& encoding) {
  const int32_t enc = ParseEncoding(encoding);
  std::string bytes = CopyBytes(data, "data");
  std::unique_ptr<FloatBuffer> out;
  spoof_status st;
  {
    py::gil_scoped_release release;
    const size_t bps = enc == SPOOF_ENCODING_PCM16 ? 2 : (enc == SPOOF_ENCODING_FLOAT32 ? 4 : 1);
    out = std::make_unique<FloatBuffer>(bytes.size() / bps);
    size_t n = 0;
    st = spoof_decode(bytes.data(), bytes.size(), enc, out->data.get(), out->size, &n);
  }
  Check(st);
  return ToNumpy(std::move(*out));
}

int64_t ResampleOutputLength(int64_t n_in, int64_t orig_sr, int64_t target_sr) {
  const int32_t in_sr = CheckRate(orig_sr, "orig_sr"), out_sr = CheckRate(target_sr, "target_sr");
  int64_t n = 0;
  Check(spoof_resample_output_length(n_in, in_sr, out_sr, &n));
  return n;
}

py::array_t<float> Resample(const py::object& x, int64_t orig_sr, int64_t target_sr) {
  const int32_t in_sr = CheckRate(orig_sr, "orig_sr"), out_sr = CheckRate(target_sr, "target_sr");
  std::vector<float> in = CopyFloats(x, "x");
  std::unique_ptr<FloatBuffer> out;
  spoof_status st;
  {
    py::gil_scoped_release release;
    int64_t total = 0;
    st = spoof_resample_output_length(static_cast<int64_t>(in.size()), in_sr, out_sr, &total);
    if (st == SPOOF_OK) {
      out = std::make_unique<FloatBuffer>(static_cast<size_t>(total));
      int64_t n = 0;
      st = spoof_resample(in.data(), static_cast<int64_t>(in.size()), in_sr, out_sr, out->data.get(), total, &n);
    }
  }
  Check(st);
  return ToNumpy(std::move(*out));
}

// ---- classes -------------------------------------------------------------------------
struct Window {
  int64_t start_index;
  py::array_t<float> samples;
  bool is_final;
};

struct FrontendStats {
  int64_t samples_in, samples_out, samples_dropped, windows_emitted, pending_bytes, buffered_samples,
      discarded_bytes;
};

struct RawWindow {
  spoof_window_info info{};
  std::unique_ptr<FloatBuffer> samples;
};

// One producer (push, push_float, flush) and one consumer (next_window, windows) may run
// concurrently from two Python threads; the mutexes serialise callers on the same side
// (the C ABI requires single-producer / single-consumer) and reset takes both.
class Frontend {
 public:
  Frontend(int64_t input_sample_rate, int64_t model_sample_rate, int64_t window_samples, int64_t hop_samples,
           int64_t capacity_samples, const std::string& overflow, const std::string& encoding) {
    spoof_frontend_options_init(&opts_);
    opts_.input_sample_rate = CheckRate(input_sample_rate, "input_sample_rate");
    opts_.model_sample_rate = CheckRate(model_sample_rate, "model_sample_rate");
    opts_.window_samples = window_samples;
    opts_.hop_samples = hop_samples;
    opts_.capacity_samples = capacity_samples;
    opts_.overflow_policy = ParsePolicy(overflow);
    opts_.encoding = ParseEncoding(encoding);
    spoof_frontend* fe = nullptr;
    spoof_status st;
    {
      py::gil_scoped_release release;
      st = spoof_frontend_create(&opts_, &fe);
    }
    Check(st);
    fe_.reset(fe);
    if (opts_.capacity_samples == 0) {
      const int64_t w = opts_.window_samples, h = opts_.hop_samples;
      const int64_t want = 4 * w < SPOOF_MAX_CAPACITY_SAMPLES ? 4 * w : SPOOF_MAX_CAPACITY_SAMPLES;
      opts_.capacity_samples = want > w + h ? want : w + h;
    }
    window_size_ = static_cast<size_t>(opts_.window_samples);
  }

  int64_t Push(const py::object& data, const py::object& encoding) {
    const int32_t enc = encoding.is_none() ? opts_.encoding : ParseEncoding(py::cast<std::string>(encoding));
    std::string bytes = CopyBytes(data, "data");
    spoof_status st;
    int64_t added = 0;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(producer_mu_);
      const int64_t before = SamplesOut();
      st = spoof_frontend_push(fe_.get(), bytes.data(), bytes.size(), enc);
      added = SamplesOut() - before;
    }
    Check(st);
    return added;
  }

  int64_t PushFloat(const py::object& samples) {
    std::vector<float> x = CopyFloats(samples, "samples");
    spoof_status st;
    int64_t added = 0;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(producer_mu_);
      const int64_t before = SamplesOut();
      st = spoof_frontend_push_float(fe_.get(), x.data(), x.size());
      added = SamplesOut() - before;
    }
    Check(st);
    return added;
  }

  py::object NextWindow() {
    RawWindow raw;
    bool has = false;
    spoof_status st;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(consumer_mu_);
      st = NextLocked(&raw, &has);
    }
    Check(st);
    if (!has) return py::none();
    return py::cast(MakeWindow(std::move(raw)));
  }

  py::list Windows() {
    std::vector<RawWindow> all;
    spoof_status st = SPOOF_OK;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(consumer_mu_);
      for (;;) {
        RawWindow raw;
        bool has = false;
        st = NextLocked(&raw, &has);
        if (st != SPOOF_OK || !has) break;
        all.push_back(std::move(raw));
      }
    }
    py::list out;
    for (auto& raw : all) out.append(py::cast(MakeWindow(std::move(raw))));
    Check(st);
    return out;
  }

  void Flush() {
    spoof_status st;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(producer_mu_);
      st = spoof_frontend_flush(fe_.get());
      if (st == SPOOF_OK) flushed_.store(true);
    }
    Check(st);
  }

  void Reset() {
    spoof_status st;
    {
      py::gil_scoped_release release;
      std::scoped_lock lock(producer_mu_, consumer_mu_);
      st = spoof_frontend_reset(fe_.get());
      if (st == SPOOF_OK) flushed_.store(false);
    }
    Check(st);
  }

  FrontendStats Stats() const {
    spoof_frontend_stats s{};
    s.struct_size = sizeof(s);
    Check(spoof_frontend_get_stats(fe_.get(), &s));
    return FrontendStats{s.samples_in,      s.samples_out,   s.samples_dropped, s.windows_emitted,
                         s.pending_bytes, s.buffered_samples, s.discarded_bytes};
  }

  bool Flushed() const { return flushed_.load(); }

  const spoof_frontend_options& opts() const { return opts_; }
  std::string encoding() const { return EncodingName(opts_.encoding); }
  std::string overflow() const {
    return opts_.overflow_policy == SPOOF_OVERFLOW_ERROR ? "error" : "drop_oldest";
  }

 private:
  struct Deleter {
    void operator()(spoof_frontend* fe) const { spoof_frontend_destroy(fe); }
  };

  int64_t SamplesOut() const {
    spoof_frontend_stats s{};
    s.struct_size = sizeof(s);
    spoof_frontend_get_stats(fe_.get(), &s);
    return s.samples_out;
  }

  spoof_status NextLocked(RawWindow* raw, bool* has) {
    // Windows are copied straight into an uninitialised buffer that becomes the numpy
    // array's memory; a new one is allocated only after a window was handed out.
    if (!spare_) spare_ = std::make_unique<FloatBuffer>(window_size_);
    spoof_window_info info{};
    int32_t has_window = 0;
    const spoof_status st =
        spoof_frontend_next_window(fe_.get(), spare_->data.get(), window_size_, &info, &has_window);
    if (st == SPOOF_OK && has_window) {
      raw->info = info;
      spare_->size = static_cast<size_t>(info.n_samples);
      raw->samples = std::move(spare_);
      *has = true;
    }
    return st;
  }

  static Window MakeWindow(RawWindow&& raw) {
    return Window{raw.info.start_index, ToNumpy(std::move(*raw.samples)), raw.info.is_final != 0};
  }

  spoof_frontend_options opts_{};
  std::unique_ptr<spoof_frontend, Deleter> fe_;
  size_t window_size_ = 0;
  std::unique_ptr<FloatBuffer> spare_;  // consumer side (consumer_mu_)
  std::mutex producer_mu_;
  std::mutex consumer_mu_;
  std::atomic<bool> flushed_{false};
};

class RingBuffer {
 public:
  RingBuffer(int64_t capacity, const std::string& overflow) {
    const int32_t policy = ParsePolicy(overflow);
    spoof_ring* r = nullptr;
    Check(spoof_ring_create(capacity, policy, &r));
    ring_.reset(r);
  }

  void Push(const py::object& samples) {
    std::vector<float> x = CopyFloats(samples, "samples");
    spoof_status st;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(producer_mu_);
      st = spoof_ring_push(ring_.get(), x.data(), static_cast<int64_t>(x.size()));
    }
    Check(st);
  }

  py::array_t<float> Read(int64_t start, int64_t n) {
    if (n < 0) RaiseWith(SPOOF_ERR_INVALID_ARGUMENT, "n must be >= 0; got " + std::to_string(n));
    if (n > capacity()) {
      RaiseWith(SPOOF_ERR_INVALID_ARGUMENT, "n must be <= capacity = " + std::to_string(capacity()) + "; got " +
                                                std::to_string(n));
    }
    std::vector<float> out;
    spoof_status st;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(consumer_mu_);
      out.resize(static_cast<size_t>(n));
      st = spoof_ring_read(ring_.get(), start, out.data(), n);
    }
    Check(st);
    return ToNumpy(std::move(out));
  }

  void Consume(int64_t new_head) {
    spoof_status st;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(consumer_mu_);
      st = spoof_ring_consume(ring_.get(), new_head);
    }
    Check(st);
  }

  py::tuple Pop(int64_t max_n) {
    if (max_n < 0) RaiseWith(SPOOF_ERR_INVALID_ARGUMENT, "max_n must be >= 0; got " + std::to_string(max_n));
    const int64_t cap = std::min(max_n, capacity());
    std::vector<float> out;
    int64_t start = 0, n = 0;
    spoof_status st;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(consumer_mu_);
      out.resize(static_cast<size_t>(cap));
      st = spoof_ring_pop(ring_.get(), out.data(), cap, &start, &n);
      out.resize(static_cast<size_t>(n));
    }
    Check(st);
    return py::make_tuple(start, ToNumpy(std::move(out)));
  }

  int64_t head() const { return spoof_ring_head(ring_.get()); }
  int64_t tail() const { return spoof_ring_tail(ring_.get()); }
  int64_t dropped() const { return spoof_ring_dropped(ring_.get()); }
  int64_t capacity() const { return spoof_ring_capacity(ring_.get()); }

 private:
  struct Deleter {
    void operator()(spoof_ring* r) const { spoof_ring_destroy(r); }
  };
  std::unique_ptr<spoof_ring, Deleter> ring_;
  std::mutex producer_mu_;
  std::mutex consumer_mu_;
};

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "spoofsdk's native audio front end (libspoof) through its C ABI. See docs/c-api.md.";
  m.attr("__version__") = spoof_version_string();
  m.attr("ABI_VERSION") = static_cast<int>(SPOOF_ABI_VERSION);
  m.attr("ENCODINGS") = py::make_tuple("pcm16", "float32", "mulaw", "alaw");
  m.attr("MAX_PUSH_BYTES") = static_cast<int64_t>(SPOOF_MAX_PUSH_BYTES);
  m.attr("MAX_PUSH_SAMPLES") = static_cast<int64_t>(SPOOF_MAX_PUSH_SAMPLES);
  m.attr("MIN_SAMPLE_RATE") = SPOOF_MIN_SAMPLE_RATE;
  m.attr("MAX_SAMPLE_RATE") = SPOOF_MAX_SAMPLE_RATE;

  m.def("abi_version", &spoof_abi_version, "The SPOOF_ABI_VERSION of the compiled library.");
  m.def("version_string", []() { return std::string(spoof_version_string()); }, "The library version.");
  m.def("decode", &Decode, py::arg("data"), py::arg("encoding"),
        "Decode bytes ('pcm16', 'float32', 'mulaw', 'alaw') into float32 in [-1, 1].");
  m.def("resample", &Resample, py::arg("x"), py::arg("orig_sr"), py::arg("target_sr"),
        "Offline resampling with no start-up delay (output k is at input time k / target_sr).");
  m.def("resample_output_length", &ResampleOutputLength, py::arg("n_in"), py::arg("orig_sr"),
        py::arg("target_sr"), "ceil(n_in * target_sr / orig_sr).");

  py::class_<Window>(m, "Window", "A window of model-rate samples with its absolute start index.")
      .def_property_readonly("start_index", [](const Window& w) { return w.start_index; })
      .def_property_readonly("samples", [](const Window& w) { return w.samples; })
      .def_property_readonly("is_final", [](const Window& w) { return w.is_final; })
      .def("__repr__", [](const Window& w) {
        return "Window(start_index=" + std::to_string(w.start_index) +
               ", n_samples=" + std::to_string(w.samples.size()) + ", is_final=" + (w.is_final ? "True" : "False") +
               ")";
      });

  py::class_<FrontendStats>(m, "FrontendStats")
      .def_readonly("samples_in", &FrontendStats::samples_in)
      .def_readonly("samples_out", &FrontendStats::samples_out)
      .def_readonly("samples_dropped", &FrontendStats::samples_dropped)
      .def_readonly("windows_emitted", &FrontendStats::windows_emitted)
      .def_readonly("pending_bytes", &FrontendStats::pending_bytes)
      .def_readonly("buffered_samples", &FrontendStats::buffered_samples)
      .def_readonly("discarded_bytes", &FrontendStats::discarded_bytes)
      .def("__repr__", [](const FrontendStats& s) {
        return "FrontendStats(samples_in=" + std::to_string(s.samples_in) +
               ", samples_out=" + std::to_string(s.samples_out) +
               ", samples_dropped=" + std::to_string(s.samples_dropped) +
               ", windows_emitted=" + std::to_string(s.windows_emitted) +
               ", pending_bytes=" + std::to_string(s.pending_bytes) +
               ", buffered_samples=" + std::to_string(s.buffered_samples) +
               ", discarded_bytes=" + std::to_string(s.discarded_bytes) + ")";
      });

  py::class_<Frontend>(m, "Frontend",
                       "Streaming front end: bytes -> decode -> resample -> ring buffer -> windows.")
      .def(py::init<int64_t, int64_t, int64_t, int64_t, int64_t, const std::string&, const std::string&>(),
           py::arg("input_sample_rate"), py::kw_only(), py::arg("model_sample_rate") = 16000,
           py::arg("window_samples") = 64000, py::arg("hop_samples") = 32000, py::arg("capacity_samples") = 0,
           py::arg("overflow") = "error", py::arg("encoding") = "pcm16")
      .def_property_readonly("input_sample_rate", [](const Frontend& f) { return f.opts().input_sample_rate; })
      .def_property_readonly("model_sample_rate", [](const Frontend& f) { return f.opts().model_sample_rate; })
      .def_property_readonly("window_samples", [](const Frontend& f) { return f.opts().window_samples; })
      .def_property_readonly("hop_samples", [](const Frontend& f) { return f.opts().hop_samples; })
      .def_property_readonly("capacity_samples", [](const Frontend& f) { return f.opts().capacity_samples; })
      .def_property_readonly("overflow", &Frontend::overflow)
      .def_property_readonly("encoding", &Frontend::encoding)
      .def_property_readonly("flushed", &Frontend::Flushed)
      .def("push", &Frontend::Push, py::arg("data"), py::arg("encoding") = py::none(),
           "Push encoded bytes (default: the frontend's encoding). Returns model-rate samples added.")
      .def("push_float", &Frontend::PushFloat, py::arg("samples"),
           "Push float samples at the input rate (1-D; float64 etc. are converted to float32).")
      .def("next_window", &Frontend::NextWindow, "The next ready window, or None.")
      .def("windows", &Frontend::Windows, "Drain every ready window.")
      .def("flush", &Frontend::Flush, "End of stream: drain the resampler; the tail rule's window becomes ready.")
      .def("reset", &Frontend::Reset, "Back to the freshly created state.")
      .def("stats", &Frontend::Stats);

  py::class_<RingBuffer>(m, "RingBuffer", "Fixed-capacity float ring buffer with absolute int64 indices.")
      .def(py::init<int64_t, const std::string&>(), py::arg("capacity"), py::arg("overflow") = "error")
      .def("push", &RingBuffer::Push, py::arg("samples"))
      .def("read", &RingBuffer::Read, py::arg("start"), py::arg("n"))
      .def("consume", &RingBuffer::Consume, py::arg("new_head"))
      .def("pop", &RingBuffer::Pop, py::arg("max_n"),
           "Copy and release up to max_n oldest samples: (start_index, samples).")
      .def_property_readonly("head", &RingBuffer::head)
      .def_property_readonly("tail", &RingBuffer::tail)
      .def_property_readonly("dropped", &RingBuffer::dropped)
      .def_property_readonly("capacity", &RingBuffer::capacity);
}
