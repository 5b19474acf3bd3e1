"""haste.Classifier: a scikit-learn-like estimator over the C++ trainer.

Settings are the keys of the TOML run config (docs/cli.md), flattened: the [model] keys
(hidden, output, head_fraction, group_size, fan_in, ...) and the [train] keys (epochs,
batch_size, threads, ...), with [train.optimizer] and [train.dst] as dicts:

    haste.Classifier(hidden=[256], epochs=4, optimizer={"lr": 0.003}, dst={"enabled": True})

`seed` sets both the model's and the training seed, as `haste train --seed` does. Checkpoints
are the CLI's safetensors files: a model trained with `haste train` loads here and vice versa.
"""

import json

import numpy as np
import scipy.sparse

from . import _core
from ._convert import to_core_dataset
from .metrics import MAX_K, evaluate, jain_propensities

_DEFAULTS = json.loads(_core.default_config())
_NESTED_TRAIN_KEYS = ("optimizer", "dst")


def _run_config(settings, base=None):
    """{"model": {...}, "train": {...}} from flat settings over `base` (the defaults)."""
    config = json.loads(json.dumps(base or _DEFAULTS))  # a deep copy
    for key, value in settings.items():
        if key == "seed":
            config["model"]["seed"] = config["train"]["seed"] = value
        elif key in _NESTED_TRAIN_KEYS:
            if not isinstance(value, dict):
                raise TypeError(f"{key} must be a dict of [train.{key}] settings")
            config["train"][key].update(value)
        elif key in config["model"]:
            config["model"][key] = value
        elif key in config["train"]:
            config["train"][key] = value
        else:
            known = sorted(set(config["model"]) | set(config["train"]))
            raise ValueError(f"unknown setting {key!r}; known settings: {', '.join(known)}")
    return config


def _flatten(config):
    flat = dict(config["train"])
    flat.update(config["model"])
    return flat


class Classifier:
    """Extreme multi-label classifier: encoder -> dense head + group-shared sparse tail."""

    def __init__(self, **settings):
        self._config = _run_config(settings)
        self._model = None

    @classmethod
    def from_config_file(cls, path, **overrides):
        """Settings from a TOML run config (as `haste train --config`), then `overrides`."""
        classifier = cls()
        classifier._config = _run_config(overrides, json.loads(_core.load_config_file(path)))
        return classifier

    # scikit-learn's parameter protocol.
    def get_params(self, deep=True):
        return _flatten(self._config)

    def set_params(self, **settings):
        self._config = _run_config(settings, self._config)
        return self

    @property
    def config(self):
        """The run config: {"model": {...}, "train": {...}}, as in a TOML config file."""
        return json.loads(json.dumps(self._config))

    def fit(self, X, Y, X_test=None, Y_test=None):
        """Trains a new model on features X (scipy sparse or dense [N, F]) and labels Y (sparse
        or 0/1 [N, L]). With a test set, P@k, nDCG@k and PSP@k are computed after every epoch;
        `history_` holds one dict per epoch (loss, times, metrics)."""
        if (X_test is None) != (Y_test is None):
            raise ValueError("give both X_test and Y_test, or neither")
        train = to_core_dataset(X, Y)
        test = None if X_test is None else to_core_dataset(X_test, Y_test)
        self._model = _core.Model.train(json.dumps(self._config), train, test)
        return self

    @property
    def history_(self):
        return self._trained().history

    def predict_topk(self, X, k=MAX_K):
        """(labels int32 [N, k], scores float32 [N, k]): each row's k best labels, best first,
        in the original label ids (-1 and -inf pad rows when k exceeds the labels). Scores
        are the logits."""
        model = self._trained()
        if scipy.sparse.issparse(X):
            X = scipy.sparse.csr_matrix(X)  # row slices for the logits
        labels = model.predict(to_core_dataset(X), k)
        return labels, _logits_of(model, X, labels)

    def evaluate(self, X, Y, Y_train=None, k=MAX_K):
        """P@k, nDCG@k (and PSP@k, PSnDCG@k with Jain propensities from Y_train) of the top-k
        predictions for X against the true labels Y, as a dict of fractions."""
        labels, _ = self.predict_topk(X, k)
        shape = self.shape_
        Y = _widen_columns(Y, shape["num_labels"])
        propensities = None
        if Y_train is not None:
            propensities = jain_propensities(_widen_columns(Y_train, shape["num_labels"]))
        return evaluate(Y, labels, propensities)

    def save(self, path):
        """Writes a safetensors checkpoint (with the trainer's state when trained here, so
        `haste train --resume` can continue it from a run directory's model.safetensors)."""
        self._trained().save(path)

    @classmethod
    def load(cls, path):
        """A classifier from a checkpoint file (or a `haste train --out` directory)."""
        model = _core.Model.load(path)
        classifier = cls()
        classifier._config["model"] = json.loads(model.model_config)
        if model.train_config is not None:
            classifier._config["train"] = json.loads(model.train_config)
        classifier._model = model
        return classifier

    @property
    def shape_(self):
        """What training fixed: input kind and width, L, head labels H, groups G, g, k."""
        return json.loads(self._trained().shape)

    def tensors(self):
        """Read-only NumPy views of the model's tensors, by checkpoint name."""
        return self._trained().tensors()

    def size(self):
        """Bytes per part of the model (encoder, head, tail weights, tail indices, labels)."""
        return dict(self._trained().size)

    def _trained(self):
        if self._model is None:
            raise RuntimeError("this Classifier is not trained: call fit() or Classifier.load()")
        return self._model


def _widen_columns(Y, cols):
    Y = scipy.sparse.csr_matrix(Y)
    if Y.shape[1] > cols:
        raise ValueError(f"the labels have {Y.shape[1]} columns; the model knows only {cols}")
    return scipy.sparse.csr_matrix((Y.data, Y.indices, Y.indptr), shape=(Y.shape[0], cols))


# Rows per chunk when recomputing logits, so memory stays bounded for large inputs.
_LOGIT_ROWS = 4096


def _logits_of(model, X, labels):
    """The logits of the selected labels (original ids; -1 = none), recomputed from the model's
    tensors with the model's forward pass (include/haste/model.hpp): encoder layers
    act(x W + b), then the head's dense rows or the tail's group-shared fan-in. The C++ predict
    returns rankings only; this adds their scores."""
    tensors = model.tensors()
    config = json.loads(model.model_config)
    shape = json.loads(model.shape)
    to_model = np.empty(shape["num_labels"], dtype=np.int64)
    to_model[tensors["labels.model_to_original"]] = np.arange(shape["num_labels"])
    scores = np.full(labels.shape, -np.inf, dtype=np.float32)
    for first in range(0, labels.shape[0], _LOGIT_ROWS):
        rows = slice(first, first + _LOGIT_ROWS)
        h = _encode(tensors, config["activation"], X[rows], shape["input_dim"])
        scores[rows] = _output_logits(tensors, config, shape, h, labels[rows], to_model)
    return scores


def _encode(tensors, activation, X, input_dim):
    a = X
    layer = 0
    while f"encoder.{layer}.weight" in tensors:
        weight = tensors[f"encoder.{layer}.weight"]
        if layer == 0 and a.shape[1] < input_dim:  # a test set with fewer features
            weight = weight[: a.shape[1]]
        a = np.asarray(a @ weight, dtype=np.float32) + tensors[f"encoder.{layer}.bias"]
        a = np.maximum(a, 0) if activation == "relu" else np.tanh(a)
        layer += 1
    return a


def _output_logits(tensors, config, shape, h, labels, to_model):
    # With private features the tail reads h[:, :d/2] and the head h[:, d/2:].
    split = h.shape[1] // 2 if config["private_features"] else None
    h_head = h[:, split or 0 :]
    h_tail = h[:, :split]
    H, g = shape["head_labels"], shape["group_size"]
    out = np.full(labels.shape, -np.inf, dtype=np.float32)
    valid = labels >= 0
    model_ids = np.where(valid, to_model[np.maximum(labels, 0)], -1)
    rows = np.broadcast_to(np.arange(labels.shape[0])[:, None], labels.shape)

    head = valid & (model_ids < H)
    ids = model_ids[head]
    out[head] = np.einsum("nd,nd->n", h_head[rows[head]], tensors["head.weight"][ids])
    out[head] += tensors["head.bias"][ids]

    tail = valid & (model_ids >= H)
    if tail.any():
        slots = model_ids[tail] - H
        indices = tensors["tail.indices"][slots // g]
        gathered = h_tail[rows[tail][:, None], indices]
        out[tail] = np.einsum("nk,nk->n", gathered, tensors["tail.weight"][slots])
        out[tail] += tensors["tail.bias"][slots]
    return out
