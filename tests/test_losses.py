"""The separate batch-all triplet loss against a readable per-part loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaitbench.training.losses import triplet_index, triplet_loss


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


def test_uneven_groups_and_singletons_match_the_loop_reference():
    torch.manual_seed(2)
    emb = torch.randn(9, 6, 3)
    labels = torch.tensor([4, 0, 4, 1, 1, 1, 1, 7, 0])  # sizes 2, 2, 4, 1; not grouped contiguously
    for margin in (0.0, 0.2, 3.0):
        loss, logs = triplet_loss(emb, labels, margin=margin)
        ref, _ = reference_triplet(emb, labels, margin)
        assert float(loss) == pytest.approx(ref, rel=2e-5, abs=1e-6)


def test_one_class_or_only_singletons_give_zero_with_a_graph():
    for labels in (torch.zeros(4, dtype=torch.long), torch.arange(4)[:1]):
        emb = torch.randn(len(labels), 3, 2, requires_grad=True)
        loss, logs = triplet_loss(emb, labels)
        loss.backward()
        assert float(loss.detach()) == 0.0 and float(logs["loss_num"]) == 0
        assert torch.equal(emb.grad, torch.zeros_like(emb))


def test_index_lists_positives_then_negatives_in_column_order():
    idx = triplet_index(np.array([3, 5, 3, 5, 5]))
    # padding slots (the third positive of class 3, the third negative of class 5) are masked
    assert [r[:2] for r in idx.pos.tolist()] == [[0, 2], [1, 3], [0, 2], [1, 3], [1, 3]]
    assert idx.pos[1::2].tolist() == [[1, 3, 4]] * 2 and idx.pos[4].tolist() == [1, 3, 4]
    assert [r[:2] for r in idx.neg.tolist()] == [[1, 3], [0, 2], [1, 3], [0, 2], [0, 2]]
    assert idx.neg[0].tolist() == [1, 3, 4] and idx.neg[2].tolist() == [1, 3, 4]
    # the 2-member class's rows have a padded positive; the 3-member class's a padded negative
    assert idx.valid is not None
    assert idx.valid[0].tolist() == [[True, True, True], [True, True, True], [False, False, False]]
    assert idx.valid[1].tolist() == [[True, True, False]] * 3
    assert triplet_index(np.repeat(np.arange(3), 2)).valid is None  # P x K batches need no mask


def test_loss_reads_nothing_back_from_the_device():
    """On the meta device any data-dependent read (``.item()``, ``bool()``, boolean indexing)
    raises, as it would synchronise a CUDA device: with the host-built index the loss has none."""
    labels = np.array([0, 0, 0, 1, 1, 2])
    emb = torch.randn(6, 4, 3, device="meta", requires_grad=True)
    loss, logs = triplet_loss(emb, None, index=triplet_index(labels, "meta"))
    loss.backward()
    assert emb.grad.shape == emb.shape and loss.device.type == "meta"
    with pytest.raises((RuntimeError, NotImplementedError)):  # the check itself can fail
        triplet_loss(emb, torch.from_numpy(labels).to("meta"))
