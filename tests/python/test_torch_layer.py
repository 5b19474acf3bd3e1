"""haste.torch on CPU tensors: gradients against torch.autograd.gradcheck (float64, the CPU
kernels' double instantiation), the modules against a pure-PyTorch reference of the same layer
(gather + batched matmul), the fused loss against BCE on the reference's logits, state_dict
round trips, and DST keeping the fan-in with sorted, distinct indices."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (scripts/setup.sh installs it)")
haste_torch = pytest.importorskip("haste.torch")

from haste.torch import DstSchedule, GroupSharedLinear, HasteOutput  # noqa: E402

D, G, GROUP, K, B = 24, 5, 4, 6, 7


def reference(h, layer):
    """The layer in plain PyTorch: gather each group's k features, one matmul per group."""
    gathered = h[:, layer.indices.long()]  # [B, G, k]
    weight = layer.weight.view(layer.groups, layer.group_size, layer.fan_in)  # [G, g, k]
    z = torch.einsum("bgk,gjk->bgj", gathered, weight).reshape(h.shape[0], -1)
    return z + layer.bias


def reference_output(h, out):
    z = reference(h, out.tail)[:, : out.tail_labels]
    if out.head is not None:
        z = torch.cat([out.head(h), z], dim=1)
    return z[:, out.original_to_model]


def make_layer(dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    layer = GroupSharedLinear(D, G * GROUP, GROUP, K, generator=generator, dtype=dtype)
    with torch.no_grad():
        layer.bias.uniform_(-1, 1, generator=generator)
    return layer


def test_gradcheck_float64():
    layer = make_layer(torch.float64)
    h = torch.randn(B, D, dtype=torch.float64, requires_grad=True)
    function = haste_torch._GroupSharedFunction.apply
    assert torch.autograd.gradcheck(
        lambda h, w, b: function(h, w, b, layer.indices, None), (h, layer.weight, layer.bias))


def test_fused_loss_gradcheck_float64():
    layer = make_layer(torch.float64)
    h = torch.randn(B, D, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(B, layer.out_features) < 0.2).double()
    assert torch.autograd.gradcheck(lambda h, w, b: layer.loss(h, targets),
                                    (h, layer.weight, layer.bias))


def test_forward_and_gradients_match_the_reference():
    layer = make_layer()
    h = torch.randn(B, D, requires_grad=True)
    h_ref = h.detach().clone().requires_grad_()
    upstream = torch.randn(B, layer.out_features)
    z = layer(h)
    (z * upstream).sum().backward()
    grads = (h.grad, layer.weight.grad, layer.bias.grad)
    layer.zero_grad()
    z_ref = reference(h_ref, layer)
    (z_ref * upstream).sum().backward()
    # float32 kernels with another summation order: agreement to float32 rounding.
    torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, (h_ref.grad, layer.weight.grad, layer.bias.grad)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_leading_dimensions_and_bad_widths():
    layer = make_layer()
    h = torch.randn(2, 3, D)
    torch.testing.assert_close(layer(h), reference(h.reshape(6, D), layer).reshape(2, 3, -1))
    with pytest.raises(ValueError, match="reads 24"):
        layer(torch.randn(2, D + 1))
    with pytest.raises(ValueError, match="multiple of group_size"):
        GroupSharedLinear(D, 10, 4, K)


def test_output_module_matches_reference_in_original_label_order():
    order = np.random.default_rng(3).permutation(30)
    out = HasteOutput(D, 30, head_labels=6, group_size=GROUP, fan_in=K, label_order=order)
    assert out.tail.out_features == 24  # 24 tail labels: 6 whole groups, no padding
    h = torch.randn(B, D)
    torch.testing.assert_close(out(h), reference_output(h, out), rtol=1e-5, atol=1e-5)
    labels, scores = out.predict_topk(h, k=3)
    z = reference_output(h, out)
    torch.testing.assert_close(scores, z.gather(1, labels), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("soft", [False, True])
def test_fused_loss_matches_bce_on_reference_logits(soft):
    out = HasteOutput(D, 27, head_labels=5, group_size=GROUP, fan_in=K,
                      label_order=np.random.default_rng(1).permutation(27))
    assert out.tail.out_features - out.tail_labels == 2  # padding labels: no loss, no gradient
    h = torch.randn(B, D, requires_grad=True)
    targets = (torch.rand(B, 27) < 0.15).float()
    if soft:
        targets *= torch.rand(B, 27)
    loss = out.loss(h, targets)
    loss.backward()
    got = [h.grad, out.head.weight.grad, out.tail.weight.grad, out.tail.bias.grad]
    h_ref = h.detach().clone().requires_grad_()
    out.zero_grad()
    ref = torch.nn.functional.binary_cross_entropy_with_logits(
        reference_output(h_ref, out), targets, reduction="sum") / B
    ref.backward()
    want = [h_ref.grad, out.head.weight.grad, out.tail.weight.grad, out.tail.bias.grad]
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert torch.all(got[3][out.tail_labels:] == 0)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_sparse_and_scipy_targets_give_the_same_loss():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    out = HasteOutput(D, 20, head_labels=4, group_size=GROUP, fan_in=K)
    h = torch.randn(B, D)
    dense = (torch.rand(B, 20) < 0.2).float()
    losses = [out.loss(h, t) for t in (dense, dense.to_sparse_csr(),
                                        scipy_sparse.csr_matrix(dense.numpy()))]
    for loss in losses[1:]:
        torch.testing.assert_close(loss, losses[0])
    with pytest.raises(ValueError, match="beyond the 20 labels"):
        out.loss(h, torch.ones(B, 21))


def test_state_dict_round_trip_keeps_indices():
    out = HasteOutput(D, 30, head_labels=6, group_size=GROUP, fan_in=K)
    state = out.state_dict()
    assert state["tail.indices"].dtype == torch.int32
    assert state["tail.indices"].shape == (6, K)
    copy = HasteOutput(D, 30, head_labels=6, group_size=GROUP, fan_in=K,
                       generator=torch.Generator().manual_seed(99))
    assert not torch.equal(copy.tail.indices, out.tail.indices)
    copy.load_state_dict(state)
    h = torch.randn(B, D)
    torch.testing.assert_close(copy(h), out(h), rtol=0, atol=0)
    bad = dict(state)
    bad["tail.indices"] = state["tail.indices"].flip(1)  # descending: not sorted
    with pytest.raises(ValueError, match="increasing|sorted"):
        copy.load_state_dict(bad)


def check_indices(layer):
    indices = layer.indices
    assert indices.shape == (layer.groups, layer.fan_in) and indices.dtype == torch.int32
    assert torch.all(indices[:, 1:] > indices[:, :-1])  # sorted and distinct
    assert indices.min() >= 0 and indices.max() < layer.in_features


@pytest.mark.parametrize("prune,regrow", [("global", "random"), ("group_norm", "gradient")])
def test_dst_keeps_fan_in_sorted_and_moves_optimizer_state(prune, regrow):
    layer = make_layer()
    layer.keep_last_batch = True
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.01)
    h = torch.randn(B, D)
    layer(h).square().sum().backward()
    optimizer.step()
    before = layer.indices.clone()
    weight_before = layer.weight.detach().clone()
    moment_before = optimizer.state[layer.weight]["exp_avg"].clone()
    changed = layer.dst_step(0.5, prune, regrow, seed=7, optimizer=optimizer)
    assert changed > 0
    check_indices(layer)
    assert not torch.equal(layer.indices, before)
    moment = optimizer.state[layer.weight]["exp_avg"]
    for group in range(layer.groups):
        old = {int(f): j for j, f in enumerate(before[group])}
        for j, feature in enumerate(layer.indices[group].tolist()):
            rows = slice(group * GROUP, (group + 1) * GROUP)
            if feature in old:  # kept: weight and moment moved with the feature
                assert torch.equal(layer.weight[rows, j], weight_before[rows, old[feature]])
                assert torch.equal(moment[rows, j], moment_before[rows, old[feature]])
            else:  # regrown: zero
                assert torch.all(layer.weight[rows, j] == 0) and torch.all(moment[rows, j] == 0)


def test_dst_gradient_regrowth_needs_the_last_batch():
    layer = make_layer()
    with pytest.raises(RuntimeError, match="keep_last_batch"):
        layer.dst_step(0.2, regrow="gradient")
    with pytest.raises(ValueError, match="prune must be one of"):
        layer.dst_step(0.2, prune="magnitude")
    assert layer.dst_step(0.0) == 0
    check_indices(layer)


def test_dst_schedule_decays_and_stops_at_its_end():
    schedule = DstSchedule(interval=10, end=100, initial_fraction=0.2)
    assert schedule.fraction(5) == 0 and schedule.fraction(100) == 0 and schedule.fraction(110) == 0
    assert schedule.fraction(10) == pytest.approx(0.1 * (1 + np.cos(np.pi * 0.1)))
    assert schedule.fraction(50) == pytest.approx(0.1)
    layer = make_layer()
    before = layer.indices.clone()
    assert schedule.after_step(5, layer) == 0 and torch.equal(layer.indices, before)
    assert schedule.after_step(10, layer) > 0
    check_indices(layer)
    with pytest.raises(ValueError, match="interval"):
        DstSchedule(interval=0, end=10)


def test_from_classifier_reproduces_the_classifiers_logits():
    import haste
    import scipy.sparse

    rng = np.random.default_rng(0)
    X = scipy.sparse.random(300, 60, density=0.1, random_state=1, dtype=np.float32).tocsr()
    X = scipy.sparse.diags(1 / np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel() + 1e-12)) @ X
    Y = scipy.sparse.csr_matrix((rng.random((300, 40)) < 0.08).astype(np.float32))
    classifier = haste.Classifier(hidden=[32], group_size=8, fan_in=8, head_fraction=0.25,
                                  epochs=1, show_progress=False, threads=2, seed=1).fit(X, Y)
    out = HasteOutput.from_classifier(classifier)
    tensors = classifier.tensors()
    h = np.maximum(X @ tensors["encoder.0.weight"] + tensors["encoder.0.bias"], 0)
    labels, scores = classifier.predict_topk(X, k=5)
    z = out(torch.from_numpy(np.asarray(h, dtype=np.float32)))
    torch.testing.assert_close(z.gather(1, torch.from_numpy(labels).long()),
                               torch.from_numpy(scores), rtol=1e-4, atol=1e-4)
