"""HASTE for Python: XMC data files as scipy.sparse matrices, ranking metrics, and a
scikit-learn-like classifier over the C++ trainer (see README.md, section "Python").

    import haste
    X, Y = haste.read_xc("data/debdeps/xc/debdeps_train.txt.xz")
    model = haste.Classifier(hidden=[256], epochs=4).fit(X, Y)
    labels, scores = model.predict_topk(X_test, k=5)
    haste.metrics.evaluate(Y_test, labels)

haste.torch (imported on its own; needs PyTorch) has the output layer as torch.nn.Modules.
"""

from . import data, metrics
from ._core import HasteError
from .classifier import Classifier
from .data import read_xc, read_xc_matrix, read_xc_split, write_xc, write_xc_matrix, write_xc_split
from .metrics import evaluate, jain_propensities

__all__ = [
    "Classifier",
    "HasteError",
    "data",
    "evaluate",
    "jain_propensities",
    "metrics",
    "read_xc",
    "read_xc_matrix",
    "read_xc_split",
    "write_xc",
    "write_xc_matrix",
    "write_xc_split",
]
