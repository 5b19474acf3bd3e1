// Streaming top-k of one row of logits: scan blocks of scores (head, then tail) and keep the k
// best, so prediction never sorts or stores a whole row of L logits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <haste/error.hpp>
#include <span>
#include <utility>
#include <vector>

namespace haste::model {

class TopKSelect {
 public:
  explicit TopKSelect(int k) : k_(static_cast<size_t>(k)) { best_.reserve(k_ + 1); }

  // Offers scores[i] for label first_label + i. Labels must be offered in increasing order:
  // a score equal to a kept one then ranks after it, so ties go to the lower label.
  void scan(std::span<const float> scores, int64_t first_label) {
    for (size_t i = 0; i < scores.size(); ++i) {
      const float score = scores[i];
      if (best_.size() == k_ && !(score > best_.back().first)) continue;
      check(!std::isnan(score), "predict: NaN logit for model label {} (diverged training?)",
            first_label + static_cast<int64_t>(i));
      auto at = std::upper_bound(best_.begin(), best_.end(), score,
                                 [](float s, const auto& entry) { return s > entry.first; });
      best_.insert(at, {score, static_cast<int32_t>(first_label + static_cast<int64_t>(i))});
      if (best_.size() > k_) best_.pop_back();
    }
  }

  // Labels and their scores, best first (overwritten).
  void take(std::vector<int32_t>& labels, std::vector<float>& scores) const {
    labels.clear();
    scores.clear();
    for (const auto& [score, label] : best_) {
      labels.push_back(label);
      scores.push_back(score);
    }
  }

 private:
  size_t k_;
  std::vector<std::pair<float, int32_t>> best_;  // sorted by decreasing score
};

}  // namespace haste::model
