"""haste.torch: HASTE's output layer as PyTorch modules, on the C++ kernels.

    from haste.torch import GroupSharedLinear, HasteOutput
    out = HasteOutput(in_features=256, num_labels=L, head_labels=2048, group_size=32, fan_in=64)
    loss = out.loss(encoder(x), targets)      # BCE over sparse targets, no [B, L] logits on CUDA
    loss.backward(); optimizer.step()
    out.dst_step(0.1, optimizer=optimizer)    # prune and regrow a tenth of the tail's slots

GroupSharedLinear is the group-shared fixed fan-in layer (DESIGN.md 3): G groups of g outputs,
group G reads the k sorted features indices[G] of its input, output l has weights W[l, 0..k)
and a bias:  z[b, l] = bias[l] + sum_j W[l, j] * h[b, indices[l // g, j]].
Its forward and backward run the C++ kernels through DLPack: on CPU tensors the CPU kernels
(float32, or float64 when every input is float64: gradcheck), on CUDA tensors the GPU kernels
(bf16 operands, fp32 accumulation) on PyTorch's current stream. The extension needs no PyTorch
to build; CUDA tensors need an extension built with CUDA (HAS_CUDA).

HasteOutput is the head + tail output layer of a HASTE model: a dense nn.Linear over the head
labels and a GroupSharedLinear over the tail labels, with logits in the original label order.
SparseLinear is an encoder's first layer for scipy CSR rows (haste.read_xc's features).
"""

import contextlib
import math

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import _core

HAS_CUDA = _core.HAS_CUDA
DST_PRUNE_RULES = ("global", "group_norm")
DST_REGROW_RULES = ("random", "gradient")

# The CUDA kernels take batches of up to 1024 rows in multiples of 16 (zero rows pad them).
_CUDA_BATCH = 1024
_CUDA_ROWS = 16


def _stream(device):
    return torch.cuda.current_stream(device).cuda_stream


def _cuda_batches(B):
    """(first row, rows, padded rows) of each kernel call over a batch of B rows."""
    for first in range(0, B, _CUDA_BATCH):
        rows = min(_CUDA_BATCH, B - first)
        yield first, rows, -(-rows // _CUDA_ROWS) * _CUDA_ROWS


def _padded_transpose(x, rows, dtype):
    """x [n, c] -> [c, rows] of `dtype`, zero columns past n (the kernels' feature-major hT)."""
    out = torch.zeros(x.shape[1], rows, dtype=dtype, device=x.device)
    out[:, : x.shape[0]] = x.t()
    return out


def _padded_rows(x, rows, dtype):
    if x.shape[0] == rows:
        return x.to(dtype).contiguous()
    out = torch.zeros(rows, x.shape[1], dtype=dtype, device=x.device)
    out[: x.shape[0]] = x
    return out


def _on_device(tensor):
    """Makes the tensor's GPU current, so that the kernels launch where its data is."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


def _cpu_dtype(*tensors):
    """The CPU kernels run float64 when every input is float64 (gradient checks), else float32."""
    return torch.float64 if all(t.dtype == torch.float64 for t in tensors) else torch.float32


def _require_cuda_kernels():
    if not HAS_CUDA:
        raise RuntimeError("haste.torch: CUDA tensors need the extension built with CUDA (nvcc "
                           "present at build time); this one is CPU-only: move the layer and its "
                           "inputs to the CPU")


# The three products of the layer, dispatched on the device of h. Each takes detached tensors
# and returns results in the dtype of the tensor it is the gradient of.

def _forward(h, weight, bias, indices):
    B, L = h.shape[0], weight.shape[0]
    if not h.is_cuda:
        dtype = _cpu_dtype(h, weight, bias)
        z = torch.empty(B, L, dtype=dtype)
        _core.gsff_forward(indices, weight.to(dtype).contiguous(), bias.to(dtype).contiguous(),
                           h.to(dtype).contiguous(), z)
        return z.to(h.dtype)
    _require_cuda_kernels()
    w = weight.to(torch.bfloat16).contiguous()
    b = bias.to(torch.float32).contiguous()
    z = torch.empty(B, L, dtype=torch.bfloat16, device=h.device)
    for first, rows, padded in _cuda_batches(B):
        hT = _padded_transpose(h[first:first + rows], padded, torch.bfloat16)
        part = z[first:first + rows] if rows == padded else torch.empty(
            padded, L, dtype=torch.bfloat16, device=h.device)
        _core.gsff_cuda_forward(indices, w, b, hT, part, _stream(h.device))
        if rows != padded:
            z[first:first + rows] = part[:rows]
    return z.to(h.dtype)


def _backward_weights(h, dz, weight, bias, indices):
    if not h.is_cuda:
        dtype = _cpu_dtype(h, dz, weight)
        dweight = torch.empty(weight.shape, dtype=dtype)
        dbias = torch.empty(bias.shape, dtype=dtype)
        _core.gsff_backward_weights(indices, h.to(dtype).contiguous(), dz.to(dtype).contiguous(),
                                    dweight, dbias)
        return dweight.to(weight.dtype), dbias.to(bias.dtype)
    _require_cuda_kernels()
    dweight = torch.zeros(weight.shape, dtype=torch.float32, device=h.device)
    dbias = torch.zeros(bias.shape, dtype=torch.float32, device=h.device)
    part_weight = torch.empty(weight.shape, dtype=torch.bfloat16, device=h.device)
    part_bias = torch.empty(bias.shape, dtype=torch.float32, device=h.device)
    for first, rows, padded in _cuda_batches(h.shape[0]):
        hT = _padded_transpose(h[first:first + rows], padded, torch.bfloat16)
        dz_part = _padded_rows(dz[first:first + rows], padded, torch.bfloat16)
        _core.gsff_cuda_backward_weights(indices, hT, dz_part, part_weight, part_bias,
                                         _stream(h.device))
        dweight += part_weight  # the kernel overwrites: sum the batches here
        dbias += part_bias
    return dweight.to(weight.dtype), dbias.to(bias.dtype)


def _backward_inputs(dz, weight, bias, indices, h_shape, h_dtype):
    B, d = h_shape
    if not dz.is_cuda:
        dtype = _cpu_dtype(dz, weight)
        dh = torch.zeros(B, d, dtype=dtype)
        _core.gsff_backward_inputs(indices, weight.to(dtype).contiguous(),
                                   bias.to(dtype).contiguous(), dz.to(dtype).contiguous(), dh)
        return dh.to(h_dtype)
    _require_cuda_kernels()
    w = weight.to(torch.bfloat16).contiguous()
    dh = torch.empty(B, d, dtype=h_dtype, device=dz.device)
    for first, rows, padded in _cuda_batches(B):
        dhT = torch.zeros(d, padded, dtype=torch.float32, device=dz.device)
        dz_part = _padded_rows(dz[first:first + rows], padded, torch.bfloat16)
        _core.gsff_cuda_backward_inputs(indices, w, dz_part, dhT, _stream(dz.device))
        dh[first:first + rows] = dhT[:, :rows].t()
    return dh


class _GroupSharedFunction(torch.autograd.Function):
    """z = the layer applied to h [B, d]; `recorder` (a GroupSharedLinear or None) keeps the
    batch's h and dz for gradient-based DST regrowth."""

    @staticmethod
    def forward(ctx, h, weight, bias, indices, recorder):
        ctx.save_for_backward(h, weight, bias, indices)
        ctx.recorder = recorder
        with _on_device(h):
            return _forward(h.detach(), weight.detach(), bias.detach(), indices)

    @staticmethod
    @once_differentiable
    def backward(ctx, dz):
        h, weight, bias, indices = ctx.saved_tensors
        dz = dz.contiguous()
        if ctx.recorder is not None:
            ctx.recorder._last_batch = (h.detach(), dz.detach())
        dh = dweight = dbias = None
        with _on_device(h):
            if ctx.needs_input_grad[0]:
                dh = _backward_inputs(dz, weight, bias, indices, h.shape, h.dtype)
            if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
                dweight, dbias = _backward_weights(h, dz, weight, bias, indices)
        return dh, dweight, dbias, None, None


class _TailLossFunction(torch.autograd.Function):
    """The tail's BCE-with-logits loss over sparse targets (summed over the labels, mean over
    the batch) with its gradients computed in the same call: the fused GPU kernel, which never
    writes the logits, or on the CPU the layer's forward + the C++ tail loss + the backward
    kernels. backward() only scales the stored gradients."""

    @staticmethod
    def forward(ctx, h, weight, bias, indices, targets, count, fused_cuda):
        h, weight, bias = h.detach(), weight.detach(), bias.detach()
        tail_loss = _fused_cuda_tail_loss if fused_cuda else _cpu_tail_loss
        with _on_device(h):
            loss, dh, dweight, dbias = tail_loss(h, weight, bias, indices, targets, count)
        ctx.save_for_backward(dh, dweight, dbias)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss):
        dh, dweight, dbias = ctx.saved_tensors
        return dh * dloss, dweight * dloss, dbias * dloss, None, None, None, None


def _cpu_tail_loss(h, weight, bias, indices, targets, count):
    indptr, columns, values = targets
    z = _forward(h, weight, bias, indices)
    dtype = _cpu_dtype(h, weight, bias)
    z = z.to(dtype).contiguous()
    dz = torch.empty_like(z)
    loss = _core.gsff_tail_loss(z, indptr, columns, values, 0, count, dz)
    dweight, dbias = _backward_weights(h, dz, weight, bias, indices)
    dh = _backward_inputs(dz, weight, bias, indices, h.shape, h.dtype)
    return torch.tensor(loss, dtype=h.dtype), dh, dweight, dbias


def _fused_cuda_tail_loss(h, weight, bias, indices, targets, count):
    indptr, columns, values = targets
    B, d = h.shape
    hT = h.t().to(torch.bfloat16).contiguous()
    dweight = torch.empty(weight.shape, dtype=torch.bfloat16, device=h.device)
    dbias = torch.empty(bias.shape, dtype=torch.float32, device=h.device)
    dhT = torch.zeros(d, B, dtype=torch.float32, device=h.device)
    loss = torch.zeros(1, dtype=torch.float64, device=h.device)
    _core.gsff_cuda_fused_train(indices, weight.to(torch.bfloat16).contiguous(),
                                bias.to(torch.float32).contiguous(), hT, indptr, columns, values,
                                0, count, dweight, dbias, dhT, loss, _stream(h.device))
    return (loss[0].to(h.dtype), dhT.t().to(h.dtype), dweight.to(weight.dtype),
            dbias.to(bias.dtype))


def sparse_targets(targets, num_columns=None):
    """(rows, columns, values or None), CPU tensors, of a target matrix [B, C]: a dense tensor
    (0/1 or soft targets in [0, 1]), a torch sparse (COO or CSR) tensor, or a scipy sparse
    matrix. Values are None when every stored target is 1."""
    if hasattr(targets, "tocoo") and not isinstance(targets, torch.Tensor):  # scipy
        coo = targets.tocoo()
        rows, columns, values = (torch.from_numpy(np.asarray(a)) for a in
                                 (coo.row, coo.col, coo.data))
    elif targets.layout == torch.strided:
        rows, columns = targets.nonzero(as_tuple=True)
        values = targets[rows, columns]
    else:
        coo = targets.to_sparse_coo().coalesce()
        rows, columns = coo.indices()
        values = coo.values()
    if num_columns is not None and columns.numel() and int(columns.max()) >= num_columns:
        raise ValueError(f"targets name column {int(columns.max())}, beyond the {num_columns} "
                         "labels of the layer")
    values = values.to("cpu", torch.float32)
    if bool((values == 1).all()):
        values = None
    return rows.to("cpu", torch.int64), columns.to("cpu", torch.int64), values


def _csr_of(rows, columns, values, B, device):
    """Sorted CSR (indptr int64, columns int32, values float32 or None) on `device`, the layout
    of the kernels' targets."""
    order = torch.argsort(rows * (int(columns.max()) + 1 if columns.numel() else 1) + columns)
    rows, columns = rows[order], columns[order]
    indptr = torch.zeros(B + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=B), 0)
    values = None if values is None else values[order].to(device).contiguous()
    return (indptr.to(device), columns.to(device=device, dtype=torch.int32).contiguous(), values)


def _random_indices(groups, in_features, fan_in, generator):
    """[G, k] int32: k distinct features per group, drawn uniformly, sorted."""
    scores = torch.rand(groups, in_features, generator=generator)
    return scores.argsort(dim=1)[:, :fan_in].sort(dim=1).values.to(torch.int32)


class GroupSharedLinear(nn.Module):
    """The group-shared fixed fan-in layer: `out_features` = G * g outputs in G groups of
    `group_size` g; each group reads `fan_in` k of the `in_features` d inputs.

    Parameters: weight [G*g, k], bias [G*g]; buffer: indices [G, k] int32 (sorted, distinct per
    group; saved in the state dict, validated when loaded). Inputs are [..., d]; outputs
    [..., G*g]. Set `keep_last_batch = True` before a step whose DST regrows by gradient."""

    def __init__(self, in_features, out_features, group_size=32, fan_in=64, *, generator=None,
                 device=None, dtype=None):
        super().__init__()
        if group_size < 1 or out_features < group_size or out_features % group_size:
            raise ValueError(f"out_features = {out_features} must be a positive multiple of "
                             f"group_size = {group_size}")
        if not 1 <= fan_in <= in_features:
            raise ValueError(f"fan_in = {fan_in} must be in [1, in_features = {in_features}]")
        self.in_features, self.out_features = in_features, out_features
        self.group_size, self.fan_in = group_size, fan_in
        groups = out_features // group_size
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, fan_in, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory))
        self.register_buffer("indices", _random_indices(groups, in_features, fan_in, generator)
                             .to(device or "cpu"))
        self.keep_last_batch = False
        self._last_batch = None
        self.reset_parameters(generator)
        self.register_load_state_dict_post_hook(_check_loaded_indices)

    @property
    def groups(self):
        return self.out_features // self.group_size

    def reset_parameters(self, generator=None):
        """Weights uniform in +-1/sqrt(k) (nn.Linear's rule with fan-in k), biases zero."""
        bound = 1.0 / math.sqrt(self.fan_in)
        with torch.no_grad():
            self.weight.copy_(torch.empty(self.weight.shape).uniform_(-bound, bound,
                                                                      generator=generator))
            self.bias.zero_()

    def forward(self, h):
        if h.shape[-1] != self.in_features:
            raise ValueError(f"input has {h.shape[-1]} features; the layer reads {self.in_features}")
        flat = h.reshape(-1, self.in_features)
        z = _GroupSharedFunction.apply(flat, self.weight, self.bias, self.indices,
                                       self if self.keep_last_batch else None)
        return z.reshape(*h.shape[:-1], self.out_features)

    def loss(self, h, targets, count=None):
        """BCE-with-logits of the outputs for h [B, d] against `targets` [B, <= G*g] (see
        sparse_targets; columns are output ids), summed over the first `count` outputs (default:
        all; later ones are padding and get no loss) and averaged over the batch. On CUDA, when
        the fused kernel takes the shape (B <= 1024 a multiple of 16, g >= 8, d small enough for
        shared memory), the logits are never written to memory; otherwise the loss is computed
        from them."""
        count = self.out_features if count is None else count
        rows, columns, values = sparse_targets(targets, count)
        return self._tail_loss(h, rows, columns, values, count)

    def _tail_loss(self, h, rows, columns, values, count):
        B = h.shape[0]
        if h.is_cuda:
            _require_cuda_kernels()
            fused = _core.gsff_cuda_unsupported(self.in_features, self.groups, self.group_size,
                                                self.fan_in, B, True) is None
            if not fused:
                return _dense_bce(self(h)[:, :count], rows, columns, values)
        targets = _csr_of(rows, columns, values, B, h.device)
        return _TailLossFunction.apply(h, self.weight, self.bias, self.indices, targets, count,
                                       h.is_cuda)

    @torch.no_grad()
    def dst_step(self, fraction, prune="global", regrow="random", *, seed=None, optimizer=None):
        """Dynamic sparse training (DESIGN.md 5) with the C++ rule: prunes `fraction` of the
        slots (prune "global": lowest mean |W| over all slots; "group_norm": each group's
        lowest ||W[G, j]||_2) and regrows as many new features per group ("random", or
        "gradient": largest ||dZg^T h|| over the last batch, which needs keep_last_batch).
        New weights are zero; indices stay sorted and distinct; fan-in stays k. The state of
        `optimizer` for the weight (momentum, Adam moments) moves with the weights. Returns
        the number of slots changed."""
        if prune not in DST_PRUNE_RULES or regrow not in DST_REGROW_RULES:
            raise ValueError(f"prune must be one of {DST_PRUNE_RULES} and regrow one of "
                             f"{DST_REGROW_RULES} (got {prune!r}, {regrow!r})")
        h = dz = None
        if regrow == "gradient":
            if self._last_batch is None:
                raise RuntimeError("dst_step(regrow='gradient') needs the last batch's "
                                   "gradient: set keep_last_batch = True before the step's "
                                   "forward and backward (the fused loss() keeps none)")
            h, dz = (t.to("cpu", torch.float32).contiguous() for t in self._last_batch)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        indices = self.indices.to("cpu").contiguous().clone()
        weight = self.weight.detach().to("cpu", torch.float32).contiguous().clone()
        changed, source = _core.gsff_rewire(indices, weight, self.in_features, h, dz, prune,
                                            regrow, fraction, seed)
        self.indices.copy_(indices)
        self.weight.copy_(weight)
        if optimizer is not None and changed:
            self._move_optimizer_state(optimizer, torch.from_numpy(source))
        self._last_batch = None
        return changed

    def _move_optimizer_state(self, optimizer, source):
        # source [G, k]: the old slot of each new slot of its group, -1 where regrown.
        slots = source.to(self.weight.device).long().repeat_interleave(self.group_size, dim=0)
        kept = slots >= 0
        for value in optimizer.state.get(self.weight, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == self.weight.shape:
                value.copy_(torch.where(kept, value.gather(1, slots.clamp(min=0)),
                                        torch.zeros((), dtype=value.dtype, device=value.device)))

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"group_size={self.group_size}, fan_in={self.fan_in}")


def _check_loaded_indices(module, incompatible_keys):
    _core.gsff_validate_indices(module.indices.to("cpu", torch.int32).contiguous(),
                                module.in_features)


def _dense_bce(z, rows, columns, values):
    """The tail loss from materialised logits z [B, C] (sum over labels, mean over the batch)."""
    y = torch.zeros_like(z, dtype=torch.float32)
    y[rows.to(z.device), columns.to(z.device)] = 1 if values is None else values.to(z.device)
    loss = nn.functional.binary_cross_entropy_with_logits(z.float(), y, reduction="sum")
    return loss / z.shape[0]


class HasteOutput(nn.Module):
    """A HASTE output layer over `num_labels` labels: a dense head (nn.Linear) over
    `head_labels` of them and a GroupSharedLinear tail over the rest, padded to whole groups.

    `label_order` (length num_labels) lists the original label ids in the layer's order: the
    head's labels first, then the tail's group by group (labels that should share features
    belong next to each other; a trained haste.Classifier's order is its tensor
    "labels.model_to_original", see from_classifier). By default labels 0..H-1 are the head.
    forward() returns logits [B, num_labels] in the ORIGINAL label order."""

    def __init__(self, in_features, num_labels, head_labels, group_size=32, fan_in=64, *,
                 label_order=None, generator=None, device=None, dtype=None):
        super().__init__()
        if not 0 <= head_labels < num_labels:
            raise ValueError(f"head_labels = {head_labels} must be in [0, {num_labels})")
        self.in_features, self.num_labels, self.head_labels = in_features, num_labels, head_labels
        tail_labels = num_labels - head_labels
        groups = -(-tail_labels // group_size)
        factory = {"device": device, "dtype": dtype}
        self.head = nn.Linear(in_features, head_labels, **factory) if head_labels else None
        self.tail = GroupSharedLinear(in_features, groups * group_size, group_size, fan_in,
                                      generator=generator, **factory)
        order = torch.arange(num_labels) if label_order is None else torch.tensor(
            np.array(label_order), dtype=torch.int64)
        if order.shape != (num_labels,) or not torch.equal(order.sort().values,
                                                           torch.arange(num_labels)):
            raise ValueError(f"label_order must be a permutation of the {num_labels} labels")
        self.register_buffer("model_to_original", order.to(device or "cpu"))
        self.register_buffer("original_to_model", torch.argsort(order).to(device or "cpu"))

    @property
    def tail_labels(self):
        return self.num_labels - self.head_labels

    def model_logits(self, h):
        """Logits [B, num_labels] in the layer's order (head, then tail; padding dropped)."""
        tail = self.tail(h)[..., : self.tail_labels]
        if self.head is None:
            return tail
        return torch.cat([self.head(h), tail], dim=-1)

    def forward(self, h):
        return self.model_logits(h).index_select(-1, self.original_to_model)

    def loss(self, h, targets):
        """BCE-with-logits over all labels (summed over labels, mean over the batch: the C++
        trainer's loss) against `targets` [B, num_labels] in original label ids (see
        sparse_targets). The head's logits are dense; the tail goes through the fused loss of
        GroupSharedLinear.loss, so on CUDA no [B, L] logits are written."""
        rows, columns, values = sparse_targets(targets, self.num_labels)
        columns = self.original_to_model.cpu()[columns]
        in_tail = columns >= self.head_labels
        loss = self.tail._tail_loss(
            h, rows[in_tail], columns[in_tail] - self.head_labels,
            None if values is None else values[in_tail], self.tail_labels)
        if self.head is not None:
            in_head = ~in_tail
            loss = loss + _dense_bce(self.head(h), rows[in_head], columns[in_head],
                                     None if values is None else values[in_head])
        return loss

    @torch.no_grad()
    def predict_topk(self, h, k=5):
        """(labels [B, k] original ids, best first; scores [B, k], their logits)."""
        scores, model_ids = self.model_logits(h).float().topk(k, dim=-1)
        return self.model_to_original[model_ids], scores

    @torch.no_grad()
    def init_bias(self, label_counts, num_rows):
        """Biases at the logit of each label's training frequency (as the C++ model starts):
        `label_counts` per original label, over `num_rows` training rows."""
        counts = torch.as_tensor(np.asarray(label_counts), dtype=torch.float64)
        frequency = ((counts + 0.5) / (num_rows + 1.0))[self.model_to_original.cpu()]
        logit = torch.log(frequency) - torch.log1p(-frequency)
        if self.head is not None:
            self.head.bias.copy_(logit[: self.head_labels])
        self.tail.bias[: self.tail_labels] = logit[self.head_labels:].to(self.tail.bias)

    def dst_step(self, fraction, prune="global", regrow="random", *, seed=None, optimizer=None):
        """DST on the tail (see GroupSharedLinear.dst_step)."""
        return self.tail.dst_step(fraction, prune, regrow, seed=seed, optimizer=optimizer)

    @classmethod
    def from_classifier(cls, classifier, *, device=None):
        """The output layer of a trained haste.Classifier (its head, tail, tail indices and
        label order), to fine-tune in PyTorch on top of any encoder of width d."""
        config, shape = classifier.config["model"], classifier.shape_
        if config["private_features"] or shape["groups"] == 0:
            raise ValueError("from_classifier needs a model with a tail and without "
                             "private_features")
        tensors = classifier.tensors()
        d = tensors["head.weight"].shape[1]
        out = cls(d, shape["num_labels"], shape["head_labels"], shape["group_size"],
                  shape["fan_in"], label_order=tensors["labels.model_to_original"])
        with torch.no_grad():
            if out.head is not None:
                out.head.weight.copy_(torch.from_numpy(np.array(tensors["head.weight"])))
                out.head.bias.copy_(torch.from_numpy(np.array(tensors["head.bias"])))
            out.tail.weight.copy_(torch.from_numpy(np.array(tensors["tail.weight"])))
            out.tail.bias.copy_(torch.from_numpy(np.array(tensors["tail.bias"])))
            out.tail.indices.copy_(torch.from_numpy(np.array(tensors["tail.indices"])))
        return out.to(device or "cpu")


class DstSchedule:
    """When and how much to rewire in a training loop, as the C++ trainer does (DESIGN.md 5):
    every `interval` steps until step `end`, the fraction r0 (1 + cos(pi t / end)) / 2.

        dst = DstSchedule(interval=100, end=2 * total_steps // 3)
        ... after each optimizer step:  dst.after_step(step, output, optimizer)
    """

    def __init__(self, interval, end, initial_fraction=0.1, prune="global", regrow="random"):
        if interval < 1 or end < 0 or not 0 <= initial_fraction <= 1:
            raise ValueError(f"DstSchedule: interval {interval} must be >= 1, end {end} >= 0 "
                             f"and initial_fraction {initial_fraction} in [0, 1]")
        self.interval, self.end = interval, end
        self.initial_fraction, self.prune, self.regrow = initial_fraction, prune, regrow

    def fraction(self, step):
        """r_t after `step` steps (1-based count), 0 when no update is due."""
        if step % self.interval or step >= self.end:
            return 0.0
        return self.initial_fraction * (1 + math.cos(math.pi * step / self.end)) / 2

    def after_step(self, step, module, optimizer=None):
        """Rewires `module` (HasteOutput or GroupSharedLinear) when an update is due after
        `step` steps; returns the number of slots changed."""
        fraction = self.fraction(step)
        if fraction == 0:
            return 0
        return module.dst_step(fraction, self.prune, self.regrow, optimizer=optimizer)


class SparseLinear(nn.Module):
    """x W + b for rows of a scipy sparse matrix (XC tf-idf features, as haste.read_xc returns
    them): the usual first layer of an encoder on sparse inputs, as an nn.EmbeddingBag whose
    bags are the rows' features weighted by their values. Rows go to the module's device."""

    def __init__(self, in_features, out_features, *, device=None, dtype=None):
        super().__init__()
        self.bag = nn.EmbeddingBag(in_features, out_features, mode="sum", device=device,
                                   dtype=dtype)
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype))

    def forward(self, X):
        X = X.tocsr()
        device = self.bias.device
        indices = torch.from_numpy(X.indices.astype(np.int64)).to(device)
        offsets = torch.from_numpy(X.indptr[:-1].astype(np.int64)).to(device)
        weights = torch.from_numpy(X.data).to(device, self.bias.dtype)
        return self.bag(indices, offsets, per_sample_weights=weights) + self.bias
