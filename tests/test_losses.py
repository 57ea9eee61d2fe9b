"""The separate batch-all triplet loss against a readable per-part loop."""

from __future__ import annotations

import torch

from gaitbench.training.losses import triplet_loss


def reference_triplet(emb, labels, margin):
    """Loop reference: per part, every (anchor, positive incl. itself, negative) triple, the mean
    over non-zero losses, then the mean over parts."""
    n, c, p = emb.shape
    part_losses = []
    for k in range(p):
        x = emb[:, :, k].double()
        d = torch.cdist(x, x)
        values = []
        for a in range(n):
            for q in range(n):
                if labels[q] != labels[a]:
                    continue
                for m in range(n):
                    if labels[m] == labels[a]:
                        continue
                    values.append(max(0.0, float(d[a, q] - d[a, m] + margin)))
        nz = [v for v in values if v != 0]
        part_losses.append(sum(nz) / len(nz) if nz else 0.0)
    return sum(part_losses) / p, len(values)


def test_matches_loop_reference():
    torch.manual_seed(0)
    emb = torch.randn(6, 5, 3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])  # P = 3, K = 2
    loss, logs = triplet_loss(emb, labels, margin=0.2)
    ref, triplets = reference_triplet(emb, labels, 0.2)
    assert triplets == 48  # per part, as measured on the reference
    assert abs(float(loss) - ref) < 1e-5
    assert 0 < float(logs["loss_num"]) <= 48


def test_unequal_groups_use_the_masked_path():
    torch.manual_seed(1)
    emb = torch.randn(7, 4, 2)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    loss, _ = triplet_loss(emb, labels, margin=0.3)
    ref, _ = reference_triplet(emb, labels, 0.3)
    assert abs(float(loss) - ref) < 1e-5


def test_zero_when_all_triplets_satisfied_and_gradients_flow():
    emb = torch.zeros(4, 2, 1)
    emb[2:, 0, 0] = 10.0
    loss, logs = triplet_loss(emb, torch.tensor([0, 0, 1, 1]), margin=0.2)
    assert float(loss) == 0.0 and float(logs["loss_num"]) == 0
    emb = torch.randn(4, 3, 2, requires_grad=True)
    loss, _ = triplet_loss(emb, torch.tensor([0, 0, 1, 1]), margin=5.0)
    loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
