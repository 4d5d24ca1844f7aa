import pytest
import torch

from vistok.quantizers import FSQQuantizer, LFQQuantizer, VQQuantizer

QUANTIZERS = {
    "fsq": lambda: FSQQuantizer([8, 5, 5, 5], input_norm=True),
    "fsq-projected": lambda: FSQQuantizer([8, 5, 5, 5], dim=12),
    "vq": lambda: VQQuantizer(dim=12, codebook_size=64),
    "vq-euclidean": lambda: VQQuantizer(dim=8, codebook_size=32, use_cosine_sim=False, codebook_dim=4),
    "lfq": lambda: LFQQuantizer(dim=6, codebook_size=64),
}


@pytest.mark.parametrize("name", QUANTIZERS)
def test_round_trip_and_contract(name):
    q = QUANTIZERS[name]()
    z = torch.randn(4, 16, q.dim)
    q.train()
    q(z)  # one training step to move EMA codebooks / BatchNorm statistics
    q.eval()
    out = q(z)
    assert out.indices.dtype == torch.int64 and out.indices.shape == (4, 16)
    assert out.codes.shape == (4, 16, q.dim) and out.codes.dtype == torch.float32
    assert int(out.indices.min()) >= 0 and int(out.indices.max()) < q.codebook_size
    torch.testing.assert_close(q.indices_to_codes(out.indices), out.codes, atol=1e-5, rtol=1e-5)
    table = q.codes()
    assert table.shape == (q.codebook_size, q.dim) and table.dtype == torch.float32
    torch.testing.assert_close(table[out.indices], out.codes, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", QUANTIZERS)
def test_quantizes_in_fp32_under_cpu_autocast(name):
    q = QUANTIZERS[name]().eval()
    z = torch.randn(2, 8, q.dim)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z.bfloat16())
    assert out.codes.dtype == torch.float32
    assert torch.equal(out.indices, q(z.bfloat16().float()).indices)


def test_fsq_without_rounding_is_continuous_and_bounded():
    q = FSQQuantizer([8, 5, 5, 5]).eval()
    z = torch.randn(2, 64, 4) * 3
    q.rounding = False
    soft = q(z).codes
    q.rounding = True
    hard = q(z).codes
    assert soft.abs().max() <= 1.0 + 2e-3  # FSQ bounds with a (1 + 1e-3) margin
    assert not torch.equal(soft, hard)
    assert (soft - hard).abs().max() < 0.5  # rounding moves a value by at most half a level


def test_out_of_range_ids_are_refused():
    q = FSQQuantizer([8, 5, 5, 5])
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        q.check_indices(torch.tensor([[0, 1000]]))
    with pytest.raises(ValueError, match="integer"):
        q.check_indices(torch.tensor([[0.5]]))


@pytest.mark.parametrize("name", QUANTIZERS)
def test_usage_metrics_are_computed_when_read_and_only_then(name):
    """Training logs codebook usage and perplexity; encoding never reads them and does not pay for the
    histogram over the whole codebook."""
    q = QUANTIZERS[name]().eval()
    # 64 x 16 ids over a codebook of <= 1000 codes: every quantizer here uses several codes
    out = q(torch.randn(64, 16, q.dim))
    assert out._metrics is None  # nothing computed yet
    m = out.metrics
    used = out.indices.unique().numel()
    assert set(m) == {"usage", "perplexity"}
    assert float(m["usage"]) == pytest.approx(used / q.codebook_size)
    assert 1.0 < float(m["perplexity"]) <= used + 1e-4
    assert out.metrics is m  # computed once
