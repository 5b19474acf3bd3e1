// NumPy <-> std::vector at the boundary of the extension. Arrays going out own their memory (a
// moved-in vector held by a capsule), so Python keeps them alive without copies; arrays coming
// in are copied into the library's containers, which own their data.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace haste::python {

namespace nb = nanobind;

template <typename T>
using InArray = nb::ndarray<const T, nb::c_contig, nb::device::cpu>;
template <typename T>
using OutArray = nb::ndarray<nb::numpy, T>;

// A NumPy array of shape `shape` over `values` (whose size must match), taking ownership.
template <typename T>
OutArray<T> to_numpy(std::vector<T>&& values, std::initializer_list<size_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return OutArray<T>(owned->data(), shape.size(), shape.begin(), owner);
}

template <typename T>
OutArray<T> to_numpy(std::vector<T>&& values) {
  const size_t size = values.size();
  return to_numpy(std::move(values), {size});
}

template <typename T>
std::vector<T> to_vector(const InArray<T>& array) {
  return std::vector<T>(array.data(), array.data() + array.size());
}

}  // namespace haste::python
