// Names shared by the checkpoint writer and reader (include/haste/checkpoint.hpp).
#pragma once

namespace haste::checkpoint_format {

inline constexpr char kFormat[] = "haste-checkpoint";
inline constexpr char kFormatVersion[] = "1";
inline constexpr char kOptimizerPrefix[] = "optimizer.";
inline constexpr char kVocabularyTensor[] = "featurizer.vocabulary";
// A sharded checkpoint: each shard file's stretches, and the index's format.
inline constexpr char kLabelShardKey[] = "label_shard";
inline constexpr char kIndexFormat[] = "haste-sharded-checkpoint";

}  // namespace haste::checkpoint_format
