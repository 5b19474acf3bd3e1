// Propensities, top-k and the ranking metrics of include/haste/metrics.hpp for NumPy inputs.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <haste/error.hpp>
#include <haste/metrics.hpp>
#include <optional>
#include <span>

#include "bindings.hpp"
#include "matrices.hpp"

namespace haste::python {
namespace {

using NamedValues = std::vector<std::pair<std::string, double>>;

std::span<const double> as_span(const std::optional<InArray<double>>& propensities) {
  if (!propensities) return {};
  check(propensities->ndim() == 1, "propensities must be a 1-D array, one per label");
  return {propensities->data(), propensities->size()};
}

NamedValues evaluate_top_k(const InArray<int32_t>& top_k, const CsrMatrix& truth,
                           const std::optional<InArray<double>>& propensities) {
  Rankings rankings = import_top_k(top_k, truth.cols);
  nb::gil_scoped_release unlocked;
  return evaluate(rankings, truth, as_span(propensities)).named_values();
}

NamedValues evaluate_scores(const CsrMatrix& scores, const CsrMatrix& truth,
                            const std::optional<InArray<double>>& propensities) {
  check(scores.has_values(), "the score matrix has no values");
  nb::gil_scoped_release unlocked;
  return evaluate(scores, truth, as_span(propensities)).named_values();
}

nb::tuple top_k_of_scores(const CsrMatrix& scores, int k) {
  check(scores.has_values(), "the score matrix has no values");
  Rankings rankings;
  {
    nb::gil_scoped_release unlocked;
    rankings = top_k(scores, k);
  }
  return export_top_k(rankings, k);
}

OutArray<double> propensities_of(const CsrMatrix& train_labels, double A, double B) {
  return to_numpy(jain_propensities(train_labels, A, B));
}

OutArray<int64_t> counts_of(const CsrMatrix& labels) { return to_numpy(label_counts(labels)); }

}  // namespace

void bind_metrics(nb::module_& m) {
  m.attr("MAX_K") = kMaxK;
  m.attr("DEFAULT_PROPENSITY_A") = kDefaultPropensityA;
  m.attr("DEFAULT_PROPENSITY_B") = kDefaultPropensityB;
  m.def("jain_propensities", &propensities_of, nb::arg("train_labels"), nb::arg("A"), nb::arg("B"));
  m.def("label_counts", &counts_of, nb::arg("labels"));
  m.def("top_k", &top_k_of_scores, nb::arg("scores"), nb::arg("k"));
  m.def("evaluate_top_k", &evaluate_top_k, nb::arg("top_k"), nb::arg("truth"),
        nb::arg("propensities").none());
  m.def("evaluate_scores", &evaluate_scores, nb::arg("scores"), nb::arg("truth"),
        nb::arg("propensities").none());
}

}  // namespace haste::python
