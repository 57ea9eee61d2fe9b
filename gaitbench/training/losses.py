"""Losses over part-based embeddings ``[n, c, p]``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..nn import host_to_device


def part_distances(emb: torch.Tensor) -> torch.Tensor:
    """``[n, c, p]`` -> per-part Euclidean distances ``[p, n, n]`` (float32), as the reference:
    ``sqrt(relu(|x|^2 + |y|^2 - 2 x.y))``."""
    x = emb.float().permute(2, 0, 1)  # [p, n, c]
    sq = (x * x).sum(-1)
    d2 = sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * torch.bmm(x, x.transpose(1, 2))
    return torch.sqrt(torch.relu(d2))


@dataclass(frozen=True)
class TripletIndex:
    """Which columns of a batch's distance matrix are each row's positives and negatives, decided
    on the host from the labels before the forward pass, so the loss itself never reads a tensor
    back from the device (no host-device synchronisation inside a training step).

    ``pos [n, kp]`` lists each anchor's positives (itself included), ``neg [n, kn]`` its
    negatives; with unequal group sizes the rows are padded and ``valid [n, kp, kn]`` marks the
    real (positive, negative) pairs (``None`` when every pair is real, as for P x K batches)."""

    pos: torch.Tensor
    neg: torch.Tensor
    valid: torch.Tensor | None

    @property
    def empty(self) -> bool:
        return self.pos.shape[1] == 0 or self.neg.shape[1] == 0


def triplet_index(labels, device=None) -> TripletIndex:
    """The :class:`TripletIndex` of ``labels`` (numpy or tensor; a CUDA tensor is read back once).
    On CUDA the index travels from pinned memory without blocking the host."""
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    device = torch.device(device) if device is not None else (
        labels.device if isinstance(labels, torch.Tensor) else torch.device("cpu"))
    same = lab[:, None] == lab[None, :]
    n = len(lab)
    n_pos = same.sum(1)
    n_neg = n - n_pos
    kp, kn = int(n_pos.max(initial=0)), int(n_neg.max(initial=0))
    # a stable argsort of the mask puts each row's members (in column order) first
    pos = np.argsort(~same, axis=1, kind="stable")[:, :kp]
    neg = np.argsort(same, axis=1, kind="stable")[:, :kn]
    valid = None
    if (n_pos != kp).any() or (n_neg != kn).any():
        valid = ((np.arange(kp)[None, :, None] < n_pos[:, None, None])
                 & (np.arange(kn)[None, None, :] < n_neg[:, None, None]))
    return TripletIndex(host_to_device(pos, device), host_to_device(neg, device),
                        None if valid is None else host_to_device(valid, device))


def triplet_loss(emb: torch.Tensor, labels, margin: float = 0.2, index: TripletIndex | None = None
                 ) -> tuple[torch.Tensor, dict]:
    """Separate batch-all triplet loss ("BA+"), computed for all parts in one batched operation.

    Every (anchor, positive, negative) triple per part, the anchor itself counted among its
    positives, as in the reference. Per part the loss is the mean over the non-zero triplets
    (0 when there are none); the returned loss is the mean over parts. Also returns logs:
    ``hard_loss`` (max triplet loss, mean over parts), ``loss_num`` (non-zero triplets, mean over
    parts) and ``mean_dist``, all as tensors.

    ``index``: the batch's :func:`triplet_index`, built on the host from the labels the loader
    produced; without it, one is built from ``labels`` (reading them back if they are on CUDA).
    """
    dist = part_distances(emb)  # [p, n, n]
    p, n, _ = dist.shape
    if index is None:
        index = triplet_index(labels, dist.device)
    if index.empty:  # one class, or singletons only: no triplet
        zero = emb.sum() * 0.0
        return zero, {"hard_loss": zero.detach(), "loss_num": zero.detach(), "mean_dist": dist.mean().detach()}
    kp, kn = index.pos.shape[1], index.neg.shape[1]
    ap = dist.gather(2, index.pos.unsqueeze(0).expand(p, n, kp))  # [p, n, kp]
    an = dist.gather(2, index.neg.unsqueeze(0).expand(p, n, kn))  # [p, n, kn]
    loss = torch.relu(ap.unsqueeze(3) - an.unsqueeze(2) + margin)  # [p, n, kp, kn]
    if index.valid is not None:  # padding pairs contribute 0, which is neither summed nor counted
        loss = loss * index.valid
    loss = loss.reshape(p, -1)
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
