// The parts of the extension module haste._core, one function per source file.
#pragma once

#include <nanobind/nanobind.h>

namespace haste::python {

void bind_matrices(nanobind::module_& m);  // CsrMatrix, DenseMatrix, Dataset, Rankings
void bind_data(nanobind::module_& m);      // XC file readers and writers
void bind_metrics(nanobind::module_& m);   // propensities, top-k, P@k / nDCG@k / PSP@k
void bind_model(nanobind::module_& m);     // training, prediction, checkpoints

}  // namespace haste::python
