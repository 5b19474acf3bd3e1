// The output layer run as P label shards on in-process ranks (DESIGN.md 11; the CPU backend's
// form of the sharded path, so CI tests sharding without GPUs). Rank r computes shard r of
// split_labels(H, G, P) on the whole batch:
//   h (the encoder's output, computed once: the encoder is replicated, see below)
//     -> rank r: loss and gradients of its labels, its share of dh     (OutputLayer, concurrent)
//     -> all-reduce of dh and of the loss over the ranks               (summed in rank order)
// The encoder is not split: every rank would compute the same h from the same weights and
// batch, so the in-process ranks share one encoder pass and one backward from the summed dh.
// That is the data-parallel encoder's math (h all-gathered, dh reduce-scattered to the rows'
// owners, encoder gradients all-reduced) without its row-sparse all-reduce of the embedding
// gradient; the GPU path can swap it in behind the same all-reduce of dh.
//
// Prediction: each rank keeps its labels' top-k per row, then the P candidate lists are
// merged; ties go to the lower model label, as in the unsharded top-k.
//
// A multi-process run (haste train under torchrun/mpirun, issue 9) builds the layer's shards
// with a communicator instead: this process is rank comm.rank() of comm.size() and computes its
// own shard only, the others being in other processes; the same per-rank code runs, and the
// collectives go through `comm` (TcpGroup sums in InProcessGroup's rank order, so P processes
// train exactly as P in-process shards do). Each process still holds the whole layer (its
// encoder pass needs all of h anyway, and the other shards' rows simply stay unused and
// unchanged: Optimizer::update_label_shard_only), and prediction exchanges the ranks' candidate
// lists through an all-gather. Every rank must then call forward_backward and top_k together,
// and top_k is no longer safe to call from several threads at once.
//
// DST keeps its exact semantics, the global prune rule included: it runs after the optimizer
// step on the whole tail, which in-process shards leave in one place (their parameters are
// stretches of the model's arrays), and the gradient rule reads the one dz [B, G*g] that every
// shard writes its columns of. A multi-process run rewires each process's own groups instead
// (apply_dst with the communicator: the slot scores are all-gathered for the global rule's
// threshold, include/haste/dst.hpp), reading its columns of that dz; so do the GPU loops
// (OutputLayerGpu::rewire_tail with a TailPart).
//
// P = 1 runs the same code on the calling thread: the unsharded model is the 1-shard case.
#pragma once

#include <cstdint>
#include <haste/shard/communicator.hpp>
#include <haste/shard/in_process.hpp>
#include <haste/shard/label_shards.hpp>
#include <haste/sparse.hpp>
#include <span>
#include <vector>

#include "model/output_layer.hpp"

namespace haste::model {

class OutputShards {
 public:
  // P shards of `layer`'s labels, on in-process ranks.
  OutputShards(const OutputLayer& layer, int P);
  // comm.size() shards, of which this process runs shard comm.rank(); `comm` must outlive this.
  OutputShards(const OutputLayer& layer, shard::Communicator& comm);

  int size() const { return static_cast<int>(shards_.size()); }
  const std::vector<shard::LabelShard>& shards() const { return shards_; }

  // OutputLayer::forward_backward over every label: the loss, every gradient of the layer
  // (overwritten) and dh [B, d] (overwritten), each shard on its own rank.
  double forward_backward(OutputLayer& layer, int64_t B, std::span<const float> h,
                          const CsrMatrix& targets, std::span<float> dh);

  // The k best model labels of each row of h [B, d] and their logits, best first, into
  // labels[b] and scores[b] (b < B; both resized to at least B rows). Padding labels never
  // appear. Safe to call from several threads at once.
  void top_k(const OutputLayer& layer, int64_t B, std::span<const float> h, int k,
             std::vector<std::vector<int32_t>>& labels,
             std::vector<std::vector<float>>& scores) const;

 private:
  // Rank comm.rank()'s part of forward_backward: its shard into my_dh, then the sums.
  double rank_forward_backward(shard::Communicator& comm, OutputLayer& layer,
                               OutputLayer::Workspace& work, int64_t B, std::span<const float> h,
                               const CsrMatrix& targets, std::span<float> my_dh);

  std::vector<shard::LabelShard> shards_;
  shard::Communicator* process_group_ = nullptr;  // a multi-process run's, or null
  shard::InProcessGroup group_;
  std::vector<OutputLayer::Workspace> workspaces_;  // one per rank of this process
  std::vector<std::vector<float>> dh_;              // ranks 1..P-1's share of dh [B, d]
};

}  // namespace haste::model
