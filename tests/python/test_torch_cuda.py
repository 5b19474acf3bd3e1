"""haste.torch on CUDA tensors (skipped without a GPU or an extension built with CUDA): the GPU
kernels against the same pure-PyTorch reference as test_torch_layer.py, computed in fp32 from
the bf16-rounded operands the kernels read, so the tolerances only cover fp32 summation order
and the bf16 rounding of the outputs (z, dz, dW); the fused loss against BCE on the reference
logits; launches on PyTorch's current (non-default) stream; the fallbacks (unfused loss, g = 1).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (scripts/setup.sh installs it)")
haste_torch = pytest.importorskip("haste.torch")

from haste.torch import GroupSharedLinear, HasteOutput  # noqa: E402

# Skipped test by test (not the module), so that pytest still exits 0 on a CPU-only machine.
pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and haste_torch.HAS_CUDA),
                                reason="needs a CUDA GPU and the extension built with CUDA")

CUDA = torch.device("cuda")


def bf16(x):
    return x.detach().to(torch.bfloat16).float()


def rounded(x):
    """x rounded to bf16 in the forward pass, with the gradient of x (straight through)."""
    return x + (bf16(x) - x.detach())


def reference(h, layer):
    """The layer on the bf16-rounded operands, in fp32: gather + batched matmul."""
    gathered = h[:, layer.indices.long()]
    weight = rounded(layer.weight).view(layer.groups, layer.group_size, layer.fan_in)
    z = torch.einsum("bgk,gjk->bgj", gathered, weight).reshape(h.shape[0], -1)
    return z + layer.bias


def assert_close(got, want, tol):
    """Within `tol` of the reference's scale (bf16 outputs carry 8 significant bits)."""
    scale = want.abs().max().item() + 1e-6
    torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol * scale)


def make_layer(d, G, g, k, seed=0):
    generator = torch.Generator().manual_seed(seed)
    layer = GroupSharedLinear(d, G * g, g, k, generator=generator)
    with torch.no_grad():
        layer.bias.uniform_(-1, 1, generator=generator)
    return layer.to(CUDA)


@pytest.mark.parametrize("g,k,B", [(8, 64, 64), (32, 32, 100), (64, 128, 16), (1, 64, 48),
                                   (32, 64, 2100)])
def test_forward_and_gradients_match_the_reference(g, k, B):
    d, G = 256, 37
    layer = make_layer(d, G, g, k)
    h = torch.randn(B, d, device=CUDA)
    h_kernel = h.clone().requires_grad_()
    upstream = torch.randn(B, G * g, device=CUDA)
    z = layer(h_kernel)
    (z * upstream).sum().backward()
    got = (h_kernel.grad, layer.weight.grad, layer.bias.grad)
    layer.zero_grad()
    h_ref = bf16(h).requires_grad_()
    z_ref = reference(h_ref, layer)
    # The kernels read dz in bf16: the reference does too.
    z_ref.backward(bf16(upstream))
    want = (h_ref.grad, layer.weight.grad, layer.bias.grad)
    assert_close(z, z_ref, 1e-2)
    for a, b in zip(got, want):
        assert_close(a, b, 2e-2)


def test_launches_on_the_current_stream():
    layer = make_layer(256, 16, 32, 64)
    h = torch.randn(256, 256, device=CUDA)
    expected = layer(h)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            z = layer(h)
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(z, expected, rtol=0, atol=0)


@pytest.mark.parametrize("d", [256, 1024])  # 1024: too wide for the fused kernel, unfused path
def test_fused_loss_matches_bce_on_reference_logits(d):
    L, H, B = 700, 60, 128
    out = HasteOutput(d, L, head_labels=H, group_size=32, fan_in=64,
                      label_order=np.random.default_rng(0).permutation(L),
                      generator=torch.Generator().manual_seed(0)).to(CUDA)
    fused = haste_torch._core.gsff_cuda_unsupported(d, out.tail.groups, 32, 64, B, True) is None
    assert fused == (d == 256)
    h = torch.randn(B, d, device=CUDA)
    targets = (torch.rand(B, L, device=CUDA) < 0.01).float()
    h_kernel = h.clone().requires_grad_()
    loss = out.loss(h_kernel, targets)
    loss.backward()
    got = (h_kernel.grad, out.tail.weight.grad, out.tail.bias.grad, out.head.weight.grad)
    out.zero_grad()
    h_ref = bf16(h).requires_grad_()
    z_tail = reference(h_ref, out.tail)[:, : out.tail_labels]
    z = torch.cat([out.head(h_ref), z_tail], dim=1)[:, out.original_to_model]
    ref = torch.nn.functional.binary_cross_entropy_with_logits(z, targets, reduction="sum") / B
    ref.backward()
    # The module's head reads the unrounded h, the reference's the rounded one: a difference
    # well inside the tolerance.
    want = (h_ref.grad, out.tail.weight.grad, out.tail.bias.grad, out.head.weight.grad)
    torch.testing.assert_close(loss.float(), ref, rtol=2e-3, atol=0)
    for a, b in zip(got, want):
        assert_close(a, b, 3e-2)


def test_cpu_and_cuda_modules_agree_through_state_dict():
    cpu = HasteOutput(256, 500, head_labels=20, group_size=16, fan_in=32)
    gpu = HasteOutput(256, 500, head_labels=20, group_size=16, fan_in=32,
                      generator=torch.Generator().manual_seed(5), device=CUDA)
    gpu.load_state_dict(cpu.state_dict())
    h = torch.randn(64, 256)
    assert_close(gpu(h.to(CUDA)).cpu(), cpu(h), 2e-2)
    gpu.dst_step(0.25, optimizer=None, seed=3)
    cpu.dst_step(0.25, optimizer=None, seed=3)
    assert torch.equal(gpu.tail.indices.cpu(), cpu.tail.indices)
