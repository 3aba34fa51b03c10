// Python bindings of fastgan._loader: the .fgd header validator and the threaded batch gatherer.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "batch_stream.hpp"
#include "header.hpp"

namespace py = pybind11;

namespace {

py::dict parse_header_py(py::bytes data, std::uint64_t file_size) {
  const std::string bytes = data;
  fastgan::Header h;
  try {
    h = fastgan::parse_header(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), file_size);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  py::dict out;
  out["version"] = h.version;
  out["count"] = h.count;
  out["channels"] = h.channels;
  out["height"] = h.height;
  out["width"] = h.width;
  out["layout"] = h.layout;
  out["label_type"] = h.label_type;
  out["checksum"] = h.checksum;
  out["images_offset"] = h.images_offset;
  out["labels_offset"] = h.labels_offset;
  out["file_size"] = h.file_size;
  return out;
}

const char* const kIsaNames[] = {"baseline", "avx2", "avx512"};

// The names of the pixel loops' vector forms this CPU runs, narrowest first.
py::tuple supported_isas() {
  py::list names;
  for (int i = 0; i <= int(fastgan::best_isa()); ++i) names.append(kIsaNames[i]);
  return py::tuple(names);
}

fastgan::Isa parse_isa(const std::string& name) {
  if (name.empty()) return fastgan::best_isa();
  for (int i = 0; i < 3; ++i)
    if (name == kIsaNames[i]) {
      if (!fastgan::isa_supported(fastgan::Isa(i)))
        throw py::value_error("BatchStream: this CPU cannot run isa '" + name + "'; leave isa unset for the widest it runs");
      return fastgan::Isa(i);
    }
  throw py::value_error("BatchStream: isa must be one of baseline, avx2, avx512 (or unset); got '" + name + "'");
}

fastgan::PixelMap pixel_map(const std::string& dtype, float scale, float offset, const std::string& isa) {
  fastgan::PixelMap map;
  map.isa = parse_isa(isa);
  if (dtype == "uint8") {
    if (scale != 1.0f || offset != 0.0f)
      throw py::value_error("BatchStream: scale and offset apply to float32 and bfloat16 output, not uint8");
    map.type = fastgan::PixelType::kUint8;
    return map;
  }
  if (dtype != "float32" && dtype != "bfloat16")
    throw py::value_error("BatchStream: dtype must be uint8, float32 or bfloat16; got '" + dtype + "'");
  map.type = dtype == "float32" ? fastgan::PixelType::kFloat32 : fastgan::PixelType::kBfloat16;
  map.scale = scale;
  map.offset = offset;
  return map;
}

// Keeps the source arrays alive for as long as worker threads may read them. The stream is declared
// last so it is destroyed (and its threads joined) before the arrays are released.
class PyBatchStream {
 public:
  PyBatchStream(py::array images, py::object labels, py::array_t<std::int64_t, py::array::c_style> order,
                py::object flips, std::size_t batch_size, const std::string& dtype, int num_threads, int prefetch,
                float scale, float offset, std::shared_ptr<fastgan::BufferPool> pool, const std::string& isa)
      : images_(images), labels_(labels) {
    if (images.dtype().kind() != 'u' || images.itemsize() != 1 || images.ndim() != 4 ||
        !(images.flags() & py::array::c_style))
      throw py::value_error("BatchStream: images must be a C-contiguous uint8 array (N, C, H, W)");
    if (batch_size < 1) throw py::value_error("BatchStream: batch_size must be >= 1");
    if (num_threads < 1) throw py::value_error("BatchStream: num_threads must be >= 1");
    if (prefetch < 1) throw py::value_error("BatchStream: prefetch must be >= 1");
    channels_ = images.shape(1);
    height_ = images.shape(2);
    width_ = images.shape(3);

    fastgan::StreamSpec spec{};
    spec.images = static_cast<const std::uint8_t*>(images.data());
    spec.n = images.shape(0);
    spec.rows = channels_ * height_;
    spec.width = width_;
    spec.batch_size = batch_size;
    spec.num_threads = num_threads;
    spec.prefetch = prefetch;
    spec.pool = std::move(pool);

    if (!labels.is_none()) {
      auto l = py::array_t<std::int64_t, py::array::c_style>::ensure(labels);
      if (!l || l.ndim() != 1 || std::uint64_t(l.shape(0)) != spec.n)
        throw py::value_error("BatchStream: labels must be an int64 array with one entry per image");
      labels_ = l;
      spec.labels = l.data();
    }
    // Checked here, once, because a bad index would make a worker read outside the images.
    const std::int64_t* o = order.data();
    spec.order.assign(o, o + order.size());
    for (std::int64_t i : spec.order)
      if (i < 0 || std::uint64_t(i) >= spec.n)
        throw py::value_error("BatchStream: order has index " + std::to_string(i) + ", outside [0, " +
                              std::to_string(spec.n) + ")");
    if (!flips.is_none()) {
      auto f = py::array_t<std::uint8_t, py::array::c_style>::ensure(flips);
      if (!f || f.ndim() != 1 || f.size() != order.size())
        throw py::value_error("BatchStream: flips must be a uint8 array as long as order");
      spec.flips.assign(f.data(), f.data() + f.size());
    }
    spec.pixels = pixel_map(dtype, scale, offset, isa);
    // NumPy has no bfloat16: those batches are uint16 bit patterns, viewed as bfloat16 by the caller.
    out_dtype_ = spec.pixels.type == fastgan::PixelType::kFloat32 ? py::dtype::of<float>()
                 : spec.pixels.type == fastgan::PixelType::kBfloat16 ? py::dtype::of<std::uint16_t>()
                                                                       : py::dtype::of<std::uint8_t>();
    stream_ = std::make_unique<fastgan::BatchStream>(std::move(spec));
  }

  py::tuple next() {
    fastgan::Batch batch;
    bool ok;
    {
      py::gil_scoped_release release;
      ok = stream_->next(batch);
    }
    if (!ok) throw py::stop_iteration();
    std::uint8_t* data = batch.lease->buffer.get();
    const std::size_t labels_offset = batch.labels_offset;
    const auto n = py::ssize_t(batch.size);
    // Both arrays share one capsule; the buffer returns to the pool when the last view dies.
    py::capsule owner(batch.lease.release(), [](void* p) { delete static_cast<fastgan::Lease*>(p); });
    py::array images(out_dtype_, {n, channels_, height_, width_}, data, owner);
    py::array labels(py::dtype::of<std::int64_t>(), {n}, data + labels_offset, owner);
    return py::make_tuple(images, labels);
  }

  void close() {
    py::gil_scoped_release release;
    stream_->close();
  }

  std::size_t len() const { return stream_->num_batches(); }
  std::size_t buffers_allocated() const { return stream_->buffers_allocated(); }
  std::shared_ptr<fastgan::BufferPool> pool() const { return stream_->pool(); }

 private:
  py::object images_;
  py::object labels_;
  py::dtype out_dtype_;
  py::ssize_t channels_ = 0, height_ = 0, width_ = 0;
  std::unique_ptr<fastgan::BatchStream> stream_;
};

}  // namespace

PYBIND11_MODULE(_loader, m) {
  m.doc() = "fastgan's native data path: the .fgd header validator and a threaded batch gatherer.";
  m.attr("__version__") = FASTGAN_VERSION;
  m.attr("HEADER_SIZE") = fastgan::kHeaderSize;
  m.attr("FORMAT_VERSION") = fastgan::kFormatVersion;

  m.def("supported_isas", &supported_isas,
        "Names of the pixel loops' vector forms this CPU runs, narrowest first ('baseline', then 'avx2', "
        "'avx512' where the CPU has them); a BatchStream uses the last unless given isa=.");

  m.def("parse_header", &parse_header_py, py::arg("data"), py::arg("file_size"),
        "Validate a .fgd header (the first 64 bytes of a file of file_size bytes) and return its fields "
        "as a dict; raises ValueError naming the problem.");

  py::class_<fastgan::BufferPool, std::shared_ptr<fastgan::BufferPool>>(
      m, "BufferPool",
      "Batch buffers a BatchStream recycles; pass BatchStream.pool to the next epoch's stream to reuse them.")
      .def_property_readonly("buffers_allocated", &fastgan::BufferPool::allocated);

  py::class_<PyBatchStream>(m, "BatchStream",
                            "One epoch of batches: sample order[i] (mirrored where flips[i]) goes to row i. "
                            "dtype 'uint8' copies the bytes; 'float32' is float32(x) * scale + offset, each "
                            "operation rounded to float32; 'bfloat16' is that rounded to nearest even, returned "
                            "as uint16 bit patterns. Worker threads run without the GIL; each returned array "
                            "owns its buffer. isa picks the pixel loops' vector form (all write the same "
                            "bits; unset: the widest this CPU runs, see supported_isas).")
      .def(py::init<py::array, py::object, py::array_t<std::int64_t, py::array::c_style>, py::object,
                    std::size_t, const std::string&, int, int, float, float, std::shared_ptr<fastgan::BufferPool>,
                    const std::string&>(),
           py::arg("images"), py::arg("labels"), py::arg("order"), py::arg("flips"), py::arg("batch_size"),
           py::arg("dtype"), py::arg("num_threads"), py::arg("prefetch"), py::arg("scale") = 1.0f,
           py::arg("offset") = 0.0f, py::arg("pool") = nullptr, py::arg("isa") = "")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &PyBatchStream::next)
      .def("__len__", &PyBatchStream::len)
      .def("close", &PyBatchStream::close, "Stop and join the worker threads; batches already returned stay valid.")
      .def_property_readonly("buffers_allocated", &PyBatchStream::buffers_allocated)
      .def_property_readonly("pool", &PyBatchStream::pool,
                             "This stream's BufferPool: the one passed in if its buffers fit, else a new one.");
}
