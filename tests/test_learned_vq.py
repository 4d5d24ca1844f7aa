"""The learned VQ codebook of TiTok / One-D-Piece (`vistok.quantizers.learned_vq`)."""

import torch
import torch.nn.functional as F

from vistok.quantizers import LearnedVQQuantizer


def test_nearest_l2_normalised_code_losses_and_straight_through_gradient():
    torch.manual_seed(0)
    q = LearnedVQQuantizer(dim=4, codebook_size=16, l2_norm=True, commitment_weight=0.25)
    z = torch.randn(2, 5, 4, requires_grad=True)
    out = q(z)
    table = F.normalize(q.embedding.weight, dim=-1)
    zn = F.normalize(z.detach(), dim=-1)
    assert torch.equal(out.indices, (zn @ table.t()).argmax(-1))  # nearest in l2 = largest cosine, normalised
    assert torch.allclose(out.codes, table[out.indices], atol=1e-6)
    assert torch.allclose(q.codes(), table)
    expected = 1.25 * (table[out.indices] - zn).pow(2).mean()  # codebook + 0.25 commitment
    assert torch.allclose(out.loss, expected, atol=1e-6)
    out.codes.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # straight through to the encoder
    assert torch.allclose(q.indices_to_codes(out.indices), out.codes.detach(), atol=1e-6)  # z + (e - z) ~ e


def test_the_loss_trains_the_codebook_and_the_clustering_update_revives_unused_codes():
    torch.manual_seed(0)
    q = LearnedVQQuantizer(dim=3, codebook_size=8, l2_norm=False, clustering=True).train()
    before = q.embedding.weight.detach().clone()
    z = torch.randn(4, 6, 3) * 3  # far from every code (codes start within +-1/8)
    out = q(z)
    out.loss.backward()
    assert q.embedding.weight.grad.abs().sum() > 0
    unused = torch.ones(8, dtype=torch.bool)
    unused[out.indices.unique()] = False
    assert unused.any()
    moved = (q.embedding.weight.detach() - before).norm(dim=1)
    assert (moved[unused] > 0.5).all()  # pulled to their nearest encoder output
    q.eval()
    snapshot = q.embedding.weight.detach().clone()
    q(z)
    assert torch.equal(q.embedding.weight.detach(), snapshot)  # no update outside training
