"""The risk scorer: a logistic regression on standardised features, stored as JSON.

A score is ``sigmoid(intercept + sum(weight * z))`` where ``z`` is a feature
standardised by the training fleet's mean and scale. Each reason is one feature: its
value, its weight (the coefficient) and its contribution (weight times z); the
contributions and the intercept add up to the score's logit exactly, so an officer (or
a court) can see what made a score, feature by feature. Scoring needs numpy alone (no
pickle: the model is its coefficients, means and scales); fitting uses scikit-learn
(:func:`fit`), deterministic for its seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from transit.risk.features import FEATURES

MODEL_VERSION = 1
# A score's level: high from a probability of 0.8, medium from 0.4, low below. The
# model is fitted with balanced classes, so 0.5 is where a transit looks as much like
# the covert ones as like the clean ones; 0.8 is four to one.
LEVELS = ((0.8, "high"), (0.4, "medium"), (0.0, "low"))  # probability from: level
# The model a database without one of its own scores with: trained on the simulator's
# fleets by transit.bench.risk.default_model (docs there), with their corridor paces.
DEFAULT_MODEL_PATH = Path(str(resources.files("transit.risk").joinpath("default_model.json")))


@dataclass(frozen=True)
class Reason:
    """One feature's part in a score."""

    feature: str
    value: float
    weight: float  # the coefficient, per standard deviation of the feature
    contribution: float  # weight times the standardised value: its share of the logit


@dataclass(frozen=True)
class Score:
    """A transit's risk: probability, level, logit and its reasons, largest first."""

    probability: float
    level: str
    logit: float
    intercept: float
    reasons: tuple[Reason, ...]

    def as_json(self) -> dict[str, Any]:
        """The score as stored and shown."""
        return {
            "probability": round(self.probability, 4),
            "level": self.level,
            "logit": round(self.logit, 4),
            "intercept": round(self.intercept, 4),
            "reasons": [
                {
                    "feature": r.feature,
                    "value": round(r.value, 3),
                    "weight": round(r.weight, 4),
                    "contribution": round(r.contribution, 4),
                }
                for r in self.reasons
            ],
        }


@dataclass(frozen=True)
class RiskModel:
    """A fitted scorer: per feature a mean, a scale and a coefficient."""

    features: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float

    def score(self, values: Mapping[str, float]) -> Score:
        """The score of one transit's features (a missing feature counts as 0)."""
        reasons = []
        for name, mean, scale, coef in zip(
            self.features, self.means, self.scales, self.coefficients, strict=True
        ):
            v = float(values.get(name, 0.0))
            reasons.append(Reason(name, v, coef, coef * (v - mean) / scale))
        reasons.sort(key=lambda r: (-abs(r.contribution), r.feature))
        logit = self.intercept + math.fsum(r.contribution for r in reasons)
        p = 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0
        level = next(name for bound, name in LEVELS if p >= bound)
        return Score(p, level, logit, self.intercept, tuple(reasons))

    def over(self, names: Sequence[str]) -> RiskModel:
        """This model over the features of ``names`` alone. A feature it has outside
        them is one the system no longer computes (a model stored before it was
        removed): it counts as 0 for every transit, so its contribution is the constant
        ``-weight * mean / scale``, folded here into the intercept. Scores are unchanged
        and no reason stands for a value never measured."""
        keep = [i for i, f in enumerate(self.features) if f in names]
        if len(keep) == len(self.features):
            return self
        gone = (i for i in range(len(self.features)) if i not in keep)
        fold = math.fsum(-self.coefficients[i] * self.means[i] / self.scales[i] for i in gone)
        return RiskModel(
            tuple(self.features[i] for i in keep),
            tuple(self.means[i] for i in keep),
            tuple(self.scales[i] for i in keep),
            tuple(self.coefficients[i] for i in keep),
            self.intercept + fold,
        )

    def to_json(self) -> dict[str, Any]:
        """The model as a JSON-ready object."""
        return {
            "v": MODEL_VERSION,
            "features": list(self.features),
            "means": list(self.means),
            "scales": list(self.scales),
            "coefficients": list(self.coefficients),
            "intercept": self.intercept,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RiskModel:
        """The model of :meth:`to_json`.

        Raises:
            ValueError: not a model of a known layout, or its columns disagree.
        """
        if data.get("v") != MODEL_VERSION:
            raise ValueError(f"risk model of layout {data.get('v')!r}")
        cols = [data[k] for k in ("features", "means", "scales", "coefficients")]
        if len({len(c) for c in cols}) != 1:
            raise ValueError("risk model: features, means, scales, coefficients differ in length")
        if any(not float(s) > 0 for s in data["scales"]):
            raise ValueError("risk model: every scale must be positive")
        return cls(
            tuple(str(f) for f in data["features"]),
            tuple(float(x) for x in data["means"]),
            tuple(float(x) for x in data["scales"]),
            tuple(float(x) for x in data["coefficients"]),
            float(data["intercept"]),
        )


def fit(
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[int],
    seed: int = 0,
    c: float = 1.0,
    features: Sequence[str] = FEATURES,
) -> RiskModel:
    """A logistic regression (scikit-learn, L2, ``c`` its inverse strength, classes
    balanced) on standardised features. A feature constant in the data gets scale 1
    and, its z being 0 throughout, weight 0."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray([[float(r.get(f, 0.0)) for f in features] for r in rows], dtype=float)
    y = np.asarray(labels, dtype=int)
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales[scales <= 1e-12] = 1.0
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=1000, random_state=seed)
    lr.fit((x - means) / scales, y)
    return RiskModel(
        tuple(features),
        tuple(float(m) for m in means),
        tuple(float(s) for s in scales),
        tuple(float(w) for w in lr.coef_[0]),
        float(lr.intercept_[0]),
    )


@dataclass(frozen=True)
class Packaged:
    """The packaged default: its model and the corridor paces it was trained with
    (seconds per km by corridor id)."""

    model: RiskModel
    corridor_paces: dict[str, float]
    trained: dict[str, Any]


def packaged(path: Path = DEFAULT_MODEL_PATH) -> Packaged:
    """The default model file (:data:`DEFAULT_MODEL_PATH`).

    Raises:
        ValueError: the file is not a model file.
    """
    data = json.loads(path.read_text())
    return Packaged(
        RiskModel.from_json(data["model"]),
        {str(k): float(v) for k, v in data.get("corridor_paces", {}).items()},
        dict(data.get("trained", {})),
    )
