"""The CKA-SR penalty: weighted sum of inter-layer CKA within groups of tapped layers."""

import functools
from collections.abc import Sequence

import keras
from keras import ops

from keras_cka_sr import cka
from keras_cka_sr._control import cond
from keras_cka_sr._tapping import PAIRS, check_feature_list, compared_pairs
from keras_cka_sr._validation import check_bool, check_float, check_int, is_int


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class CKASimilarityLoss:
    """CKA-SR regularizer of Ni et al. (arXiv 2307.07389, 2023), as in their reference code.

    Not a `keras.losses.Loss`: it takes the list of tapped feature tensors, not
    `(y_true, y_pred)`, so it does not go to `compile(loss=...)`. It reaches training
    through `add_loss`: `attach_cka_loss` or the `CKARegularization` layer add it for you.

    `value = weight * sum_g sum_{i != j in g} CKA(F_i, F_j)` over ordered pairs, i.e.
    `2 * weight * sum_{i < j}`. The paper's Eq. 11 (and the reference code) also add the
    diagonal terms CKA(F_i, F_i) = 1, a constant: the gradient is the same, and a beta
    read in the paper means the same thing here.

    Args:
        weight: beta, the penalty's factor (>= 0; 0 disables it at no cost).
            The paper uses 1e-4 on CIFAR and 1e-5 on ImageNet.
        unbiased: use the unbiased HSIC estimator (the reference's; needs n >= 4).
        groups: list of lists of feature indices; only pairs within a group are
            compared (the reference groups residual blocks by stage). None: one group
            of all features.
        pairs: "all" pairs in a group, or "adjacent" (|i - j| = 1 by position in
            the group).
        num_samples: compute on the first `k` samples of the batch only (the
            reference's samples-to-cal, 8 there); None uses the whole batch. A batch
            smaller than `k` is used whole; one smaller than the estimator's minimum
            (4 unbiased, 2 biased) is skipped in training (see `__call__`).
        every_n_steps: compute the penalty only when the step counter passed to
            `__call__` is a multiple of N (the reference's batches-to-cal, 5 there),
            0 otherwise; the other steps skip the Gram work.
        start_step: a warm-up: the penalty is 0 before this training step (counted
            from 0), e.g. until a sparse net without normalization has escaped its
            vanishing-signal start (docs: "Safety"). 0 starts at once.
        epsilon: CKA of a layer whose (normalized) self-HSIC is below this is 0.
        method: "auto", "gram" or "feature"; see `keras_cka_sr.cka`.

    The penalty is logged as `cka_sr` by `CKASRModel`/`CKASRMixin`. `unbiased=True` is
    the default here (and in `CKAMonitor`) because it is the reference's estimator and
    the biased one is inflated at the small batches a penalty sees (independent
    Gaussians: 0.198 at n=32 vs 0.017 debiased); `cka.linear_cka` keeps Kornblith et
    al.'s biased form, the standard for analysis, as its default.

    Examples:
        >>> loss = keras_cka_sr.CKASimilarityLoss(weight=0.5, unbiased=False)
        >>> f = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
        >>> round(float(loss([f, f])), 4)  # 2 x weight x CKA(f, f) = 2 x 0.5 x 1
        1.0
    """

    def __init__(
        self,
        weight: float = 1e-4,
        unbiased: bool = True,
        groups: Sequence[Sequence[int]] | None = None,
        pairs: str = "all",
        num_samples: int | None = None,
        every_n_steps: int = 1,
        epsilon: float = cka.DEFAULT_EPSILON,
        method: str = "auto",
        start_step: int = 0,
    ) -> None:
        self.weight = check_float("weight", weight, 0.0)
        self.unbiased = check_bool("unbiased", unbiased)
        if pairs not in PAIRS:
            raise ValueError(f"`pairs` must be one of {PAIRS}; got {pairs!r}.")
        if num_samples is not None:
            num_samples = check_int("num_samples", num_samples, cka.min_samples(self.unbiased))
        self.every_n_steps = check_int("every_n_steps", every_n_steps, 1)
        self.start_step = check_int("start_step", start_step, 0)
        self.epsilon = check_float("epsilon", epsilon, 0.0)
        if method not in cka.FORMS:
            raise ValueError(f"`method` must be one of {cka.FORMS}; got {method!r}.")
        self.groups = _check_groups(groups)
        self.pairs = pairs
        self.num_samples = num_samples
        self.method = method

    def compared_pairs(self, num_features):
        """The unordered (i, j) pairs the penalty sums (each counted twice)."""
        return compared_pairs(self.groups, num_features, self.pairs)

    def __call__(self, features, step=None, skip_small_batch=False):
        """The penalty for a list of >= 2 feature tensors of the same batch.

        Args:
            features: list of tensors of shape `(n, ...)`.
            step: an integer tensor (a training-step counter), required when
                `every_n_steps > 1`; the penalty is computed when
                `step % every_n_steps == 0`.
            skip_small_batch: a batch with fewer samples than the estimator needs
                (4 unbiased, 2 biased), such as an epoch's ragged last batch, gives a
                penalty of exactly 0 with zero gradient instead of a `ValueError`.
                `CKARegularization` (and so `attach_cka_loss`) pass True in training.
                A batch size known only at run time (TF graphs, per-replica batches)
                cannot raise, so such a batch always gives 0.
        """
        check_feature_list(features, "CKASimilarityLoss needs")
        pairs = self.compared_pairs(len(features))
        zero = lambda: ops.zeros((), dtype="float32")  # noqa: E731
        if self.weight == 0.0 or not pairs:
            return zero()
        needed = cka.min_samples(self.unbiased)
        n = cka.static_num_samples(features)
        if n is not None and n < needed:
            if skip_small_batch:
                return zero()
            raise ValueError(
                f"CKASimilarityLoss(unbiased={self.unbiased}) needs batches of at least "
                f"{needed} samples; got n={n}. In training, `CKARegularization` (and "
                "`attach_cka_loss`) give such a batch, e.g. an epoch's ragged last batch, a "
                "penalty of 0; call `loss(features, skip_small_batch=True)` to do the same."
            )
        conditions = []
        if n is None:
            conditions.append(ops.greater_equal(ops.shape(features[0])[0], needed))
        if (self.every_n_steps > 1 or self.start_step > 0) and step is None:
            raise ValueError(
                f"every_n_steps={self.every_n_steps} and start_step={self.start_step} need "
                "the training step: call `loss(features, step=counter)`, or use the "
                "`CKARegularization` layer, which keeps its own counter."
            )
        if self.every_n_steps > 1:
            conditions.append(ops.equal(ops.mod(ops.cast(step, "int32"), self.every_n_steps), 0))
        if self.start_step > 0:
            conditions.append(ops.greater_equal(ops.cast(step, "int32"), self.start_step))
        if not conditions:
            return self._penalty(features, pairs)
        due = functools.reduce(ops.logical_and, conditions)
        # A branch, not `ops.where`: the skipped branch's gradient (NaN for n < 4) never runs.
        return cond(due, lambda: self._penalty(features, pairs), zero)

    def _penalty(self, features, pairs):
        if self.num_samples is not None:
            features = [f[: self.num_samples] for f in features]
        # Only layers that appear in some pair are computed.
        used = sorted({i for pair in pairs for i in pair})
        position = {index: k for k, index in enumerate(used)}
        features = [features[i] for i in used]
        pairs = [(position[i], position[j]) for i, j in pairs]
        values = cka.pairwise_cka(
            features,
            pairs,
            unbiased=self.unbiased,
            epsilon=self.epsilon,
            method=cka.method_for_at_most(features, pairs, self.method, self.num_samples),
        )
        return ops.cast(2.0 * self.weight * ops.sum(values), "float32")

    def get_config(self):
        return {
            "weight": self.weight,
            "unbiased": self.unbiased,
            "groups": self.groups,
            "pairs": self.pairs,
            "num_samples": self.num_samples,
            "every_n_steps": self.every_n_steps,
            "epsilon": self.epsilon,
            "method": self.method,
            "start_step": self.start_step,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # keras-cka-sr 0.1.0 saved a `name` that had no effect (the log key is `cka_sr`).
        config.pop("name", None)
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"CKASimilarityLoss({args})"


def _check_groups(groups):
    if groups is None:
        return None
    if not isinstance(groups, (list, tuple)) or not groups:
        raise ValueError(f"`groups` must be None or a non-empty list of lists; got {groups!r}.")
    checked = []
    for group in groups:
        if not isinstance(group, (list, tuple)) or not all(is_int(i) and i >= 0 for i in group):
            raise ValueError(
                f"Each entry of `groups` must be a list of feature indices (ints >= 0); "
                f"got {group!r}."
            )
        if len(group) < 2:
            raise ValueError(
                f"Each group needs at least 2 feature indices to compare; got {list(group)!r}."
            )
        if len(set(group)) != len(group):
            raise ValueError(f"A group lists a feature index more than once: {list(group)!r}.")
        checked.append([int(i) for i in group])
    return checked
