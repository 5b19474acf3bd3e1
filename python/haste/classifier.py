"""haste.Classifier: a scikit-learn-like estimator over the C++ trainer.

Settings are the keys of the TOML run config (docs/cli.md), flattened: the [model] keys
(hidden, output, head_fraction, group_size, fan_in, ...) and the [train] keys (epochs,
batch_size, threads, ...), with [train.optimizer] and [train.dst] as dicts:

    haste.Classifier(hidden=[256], epochs=4, optimizer={"lr": 0.003}, dst={"enabled": True})

`seed` sets both the model's and the training seed, as `haste train --seed` does. Checkpoints
are the CLI's safetensors files: a model trained with `haste train` loads here and vice versa.
"""

import json

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
        are the logits, as the C++ prediction computed them."""
        return self._trained().predict(to_core_dataset(X), k)

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
