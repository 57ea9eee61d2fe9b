"""Losses over part-based embeddings ``[n, c, p]``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def part_distances(emb: torch.Tensor) -> torch.Tensor:
    """``[n, c, p]`` -> per-part Euclidean distances ``[p, n, n]`` (float32), as the reference:
    ``sqrt(relu(|x|^2 + |y|^2 - 2 x.y))``."""
    x = emb.float().permute(2, 0, 1)  # [p, n, c]
    sq = (x * x).sum(-1)
    d2 = sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * torch.bmm(x, x.transpose(1, 2))
    return torch.sqrt(torch.relu(d2))


def triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> tuple[torch.Tensor, dict]:
    """Separate batch-all triplet loss ("BA+"), computed for all parts in one batched operation.

    Every (anchor, positive, negative) triple per part, the anchor itself counted among its
    positives, as in the reference. Per part the loss is the mean over the non-zero triplets
    (0 when there are none); the returned loss is the mean over parts. Also returns logs:
    ``hard_loss`` (max triplet loss, mean over parts), ``loss_num`` (non-zero triplets, mean over
    parts) and ``mean_dist``.
    """
    dist = part_distances(emb)  # [p, n, n]
    p, n, _ = dist.shape
    same = labels.unsqueeze(0) == labels.unsqueeze(1)  # [n, n], diagonal included
    counts = same.sum(1)
    if bool((counts == counts[0]).all()) and int(counts[0]) < n:
        k = int(counts[0])
        ap = dist[:, same].view(p, n, k, 1)
        an = dist[:, ~same].view(p, n, 1, n - k)
        loss = torch.relu(ap - an + margin).reshape(p, -1)
    else:  # unequal group sizes: mask the full [p, n, n, n] cube (small batches only)
        valid = (same.unsqueeze(2) & ~same.unsqueeze(1)).reshape(-1)
        cube = torch.relu(dist.unsqueeze(3) - dist.unsqueeze(2) + margin).reshape(p, -1)
        loss = cube[:, valid]
        if loss.shape[1] == 0:
            zero = emb.sum() * 0.0
            return zero, {"hard_loss": 0.0, "loss_num": 0.0, "mean_dist": float(dist.mean())}
    nonzero = (loss != 0).sum(1).float()
    per_part = loss.sum(1) / (nonzero + 1e-9)
    per_part = torch.where(nonzero > 0, per_part, torch.zeros_like(per_part))
    logs = {
        "hard_loss": loss.max(1)[0].mean().detach(),
        "loss_num": nonzero.mean().detach(),
        "mean_dist": dist.mean().detach(),
    }
    return per_part.mean(), logs


def part_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, scale: float = 1.0,
                       label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Cross-entropy over parts: ``logits`` ``[n, classes, p]``, every (sample, part) pair a
    prediction of the sample's label, averaged over all ``n * p`` pairs (the reference's form,
    with torch's label smoothing). Computed in float32. Logs the per-part accuracy."""
    logits = logits.float() * scale
    n, _, p = logits.shape
    target = labels.view(n, 1).expand(n, p)
    loss = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    accuracy = (logits.argmax(1) == target).float().mean().detach()
    return loss, {"accuracy": accuracy}
