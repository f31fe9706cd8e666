"""Float64 NumPy scores of SNIP, GraSP and SynFlow for a two-layer ReLU MLP with biases,
written from the papers' formulas (softmax cross-entropy, mean over the batch)."""

import numpy as np


def _forward(x, w1, b1, w2, b2):
    h = x @ w1 + b1
    a = np.maximum(h, 0.0)
    return h, a, a @ w2 + b2


def gradient(x, y, w1, b1, w2, b2, temperature=1.0):
    """d loss / d (w1, w2) of mean cross-entropy on logits / temperature."""
    h, a, z = _forward(x, w1, b1, w2, b2)
    z = z / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(z.shape[1])[y]) / (len(x) * temperature)
    dw2 = a.T @ dz
    dh = (dz @ w2.T) * (h > 0)
    return x.T @ dh, dw2


def snip(x, y, w1, b1, w2, b2):
    g1, g2 = gradient(x, y, w1, b1, w2, b2)
    return np.abs(g1 * w1), np.abs(g2 * w2)


def grasp(x, y, w1, b1, w2, b2, temperature=200.0, eps=1e-6):
    """w * (H g), H g by a central difference of the analytic gradient along g."""
    g1, g2 = gradient(x, y, w1, b1, w2, b2, temperature)
    plus = gradient(x, y, w1 + eps * g1, b1, w2 + eps * g2, b2, temperature)
    minus = gradient(x, y, w1 - eps * g1, b1, w2 - eps * g2, b2, temperature)
    hg1, hg2 = ((p - m) / (2 * eps) for p, m in zip(plus, minus))
    return w1 * hg1, w2 * hg2


def synflow(w1, b1, w2, b2):
    """R = 1' (|W2|' relu(|W1|' 1 + |b1|) + |b2|); score = |w| dR/d|w|."""
    a1 = np.abs(w1).sum(0) + np.abs(b1)  # the hidden units on the all-ones input
    return np.abs(w1) * np.abs(w2).sum(1)[None, :], np.abs(w2) * a1[:, None]
