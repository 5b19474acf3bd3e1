"""End to end on the bundled debdeps data: an encoder (a sparse linear layer on the tf-idf
features + ReLU) under a haste.torch.HasteOutput, trained with the fused loss and one DST step,
improves P@1 on held-out rows over its first epoch. The output starts from the label-frequency
biases, so P@1 before training is that of always predicting the most frequent labels: the
epoch has to beat a popularity baseline, not chance."""

import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (scripts/setup.sh installs it)")

import haste  # noqa: E402
from haste.torch import HasteOutput, SparseLinear  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[2] / "data" / "debdeps" / "xc"
TRAIN_ROWS, TEST_ROWS, D, BATCH = 8000, 1000, 128, 256


def precision_at_1(encoder, output, X, Y):
    with torch.no_grad():
        labels, _ = output.predict_topk(encoder(X), k=1)
    return haste.evaluate(Y, labels.numpy().astype(np.int32))["P@1"]


def test_finetune_improves_precision_over_the_first_epoch():
    torch.manual_seed(0)
    X, Y = haste.read_xc(DATA / "debdeps_train.txt.xz")
    X_test, Y_test = haste.read_xc(DATA / "debdeps_test.txt.xz")
    X, Y, X_test, Y_test = X[:TRAIN_ROWS], Y[:TRAIN_ROWS], X_test[:TEST_ROWS], Y_test[:TEST_ROWS]
    counts = np.asarray(Y.sum(axis=0)).ravel()
    encoder = torch.nn.Sequential(SparseLinear(X.shape[1], D), torch.nn.ReLU())
    # Head: the 2048 most frequent labels; the tail grouped by frequency.
    output = HasteOutput(D, Y.shape[1], head_labels=2048, group_size=32, fan_in=32,
                         label_order=np.argsort(-counts, kind="stable"),
                         generator=torch.Generator().manual_seed(0))
    output.init_bias(counts, TRAIN_ROWS)
    optimizer = torch.optim.Adam([*encoder.parameters(), *output.parameters()], lr=0.01)
    before = precision_at_1(encoder, output, X_test, Y_test)

    losses = []
    order = np.random.default_rng(0).permutation(TRAIN_ROWS)
    for step, first in enumerate(range(0, TRAIN_ROWS, BATCH)):
        rows = order[first:first + BATCH]
        loss = output.loss(encoder(X[rows]), Y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step == 15:  # mid-epoch rewiring must not undo the training
            assert output.dst_step(0.1, optimizer=optimizer) > 0
    after = precision_at_1(encoder, output, X_test, Y_test)

    assert after > before + 0.03, (before, after)
    assert np.mean(losses[-5:]) < 0.95 * np.mean(losses[:5]), losses
