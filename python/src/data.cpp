// XC repository files <-> NumPy arrays (haste.data builds the scipy matrices).
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>

#include <haste/dataset.hpp>
#include <optional>

#include "bindings.hpp"
#include "matrices.hpp"

namespace haste::python {
namespace {

namespace fs = std::filesystem;

nb::tuple read(const fs::path& first, const std::optional<fs::path>& second, bool use_cache,
               bool show_progress) {
  ReadOptions options;
  options.use_cache = use_cache;
  options.show_progress = show_progress;
  Dataset data;
  {
    nb::gil_scoped_release unlocked;
    data = read_dataset(first, second, options);
  }
  return export_dataset(std::move(data));
}

nb::tuple read_matrix(const fs::path& file, bool use_cache) {
  ReadOptions options;
  options.use_cache = use_cache;
  options.show_progress = false;
  CsrMatrix matrix;
  {
    nb::gil_scoped_release unlocked;
    matrix = read_xc_matrix(file, options);
  }
  return export_csr(std::move(matrix));
}

}  // namespace

void bind_data(nb::module_& m) {
  m.def("read_dataset", &read, nb::arg("first"), nb::arg("second").none(), nb::arg("use_cache"),
        nb::arg("show_progress"));
  m.def("read_xc_matrix", &read_matrix, nb::arg("file"), nb::arg("use_cache"));
  m.def("write_xc", &write_xc, nb::arg("data"), nb::arg("file"),
        nb::call_guard<nb::gil_scoped_release>());
  m.def("write_xc_split", &write_xc_split, nb::arg("data"), nb::arg("features"), nb::arg("labels"),
        nb::call_guard<nb::gil_scoped_release>());
  m.def("write_xc_matrix", &write_xc_matrix, nb::arg("matrix"), nb::arg("file"),
        nb::call_guard<nb::gil_scoped_release>());
}

}  // namespace haste::python
