"""AASIST graph blocks with masks against straightforward unmasked reference formulas."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spoof_train.models.graph import (
    GraphAttentionLayer,
    GraphPool,
    HtrgGraphAttentionLayer,
    MaskedBatchNorm1d,
)


def _official_top_k(scores: torch.Tensor, h: torch.Tensor, ratio: float) -> torch.Tensor:
    """Reference: the official AASIST ``GraphPool.top_k_graph`` (shrinks to k nodes)."""
    n = max(int(h.shape[1] * ratio), 1)
    _, idx = torch.topk(scores, n, dim=1)
    return torch.gather(h * scores, 1, idx.expand(-1, -1, h.shape[-1]))


def test_graph_pool_keeps_the_official_top_k_and_ignores_masked_nodes() -> None:
    torch.manual_seed(0)
    pool = GraphPool(0.7, 8, p=0.0).eval()
    h = torch.randn(3, 23, 8)
    full = torch.ones(3, 23, dtype=torch.bool)
    out, mask = pool(h, full)
    scores = torch.sigmoid(pool.proj(h))
    ref = _official_top_k(scores, h, 0.7)
    k = ref.shape[1]  # int(23 * 0.7) = 16
    assert k == 16
    assert mask.sum(dim=1).tolist() == [k, k, k]
    assert torch.allclose(out[:, :k], ref, atol=1e-6)
    assert out[:, k:].abs().max() == 0
    # A row whose last 10 nodes are padding keeps int(13 * 0.7) = 9 valid nodes, all from the valid part.
    padded = h.clone()
    padded[1, 13:] = 50.0
    m = full.clone()
    m[1, 13:] = False
    out_p, mask_p = pool(padded, m)
    assert mask_p[1].sum().item() == 9
    ref_row = _official_top_k(torch.sigmoid(pool.proj(h[1:2, :13])), h[1:2, :13], 0.7)
    assert torch.allclose(out_p[1, :9], ref_row[0], atol=1e-6)


def test_gat_layers_equal_the_unmasked_formulas_when_nothing_is_masked() -> None:
    torch.manual_seed(1)
    gat = GraphAttentionLayer(8, 6, temperature=2.0).eval()
    x = torch.randn(2, 5, 8)
    got = gat(x, torch.ones(2, 5, dtype=torch.bool))
    pair = x.unsqueeze(2) * x.unsqueeze(1)
    att = torch.softmax(torch.matmul(torch.tanh(gat.att_proj(pair)), gat.att_weight) / 2.0, dim=-2)
    y = gat.proj_with_att(torch.matmul(att.squeeze(-1), x)) + gat.proj_without_att(x)
    ref = F.selu(
        F.batch_norm(y.view(-1, 6), gat.bn.running_mean, gat.bn.running_var, gat.bn.weight, gat.bn.bias)
    )
    assert torch.allclose(got, ref.view(2, 5, 6), atol=1e-6)

    htrg = HtrgGraphAttentionLayer(6, 4, temperature=100.0).eval()
    t, s, master = torch.randn(2, 3, 6), torch.randn(2, 4, 6), torch.randn(1, 1, 6)
    ones_t, ones_s = torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)
    got_t, got_s, got_m = htrg(t, ones_t, s, ones_s, master)
    # Reference: the official slice-assignment construction of the heterogeneous attention map.
    x = torch.cat([htrg.proj_type1(t), htrg.proj_type2(s)], dim=1)
    a = torch.tanh(htrg.att_proj(x.unsqueeze(2) * x.unsqueeze(1)))
    board = torch.zeros(2, 7, 7, 1)
    board[:, :3, :3] = torch.matmul(a[:, :3, :3], htrg.att_weight11)
    board[:, 3:, 3:] = torch.matmul(a[:, 3:, 3:], htrg.att_weight22)
    board[:, :3, 3:] = torch.matmul(a[:, :3, 3:], htrg.att_weight12)
    board[:, 3:, :3] = torch.matmul(a[:, 3:, :3], htrg.att_weight12)
    att = torch.softmax(board / 100.0, dim=-2).squeeze(-1)
    am = torch.softmax(torch.matmul(torch.tanh(htrg.att_projM(x * master)), htrg.att_weightM) / 100.0, dim=-2)
    ref_m = htrg.proj_with_attM(torch.matmul(am.squeeze(-1).unsqueeze(1), x)) + htrg.proj_without_attM(master)
    y = htrg.proj_with_att(torch.matmul(att, x)) + htrg.proj_without_att(x)
    bn = htrg.bn
    ref = F.selu(F.batch_norm(y.view(-1, 4), bn.running_mean, bn.running_var, bn.weight, bn.bias)).view(
        2, 7, 4
    )
    assert torch.allclose(got_t, ref[:, :3], atol=1e-6)
    assert torch.allclose(got_s, ref[:, 3:], atol=1e-6)
    assert torch.allclose(got_m, ref_m, atol=1e-6)


def test_masked_batch_norm_statistics_skip_masked_nodes() -> None:
    torch.manual_seed(2)
    bn = MaskedBatchNorm1d(4).train()
    ref = torch.nn.BatchNorm1d(4).train()
    x = torch.randn(3, 6, 4)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2, 1:] = False
    x_garbage = x.masked_fill(~mask.unsqueeze(-1), 1e3)
    got = bn.forward_masked(x_garbage, mask)
    expected = ref(x[mask])  # plain BatchNorm over the valid nodes only
    assert torch.allclose(got[mask], expected, atol=1e-5)
    assert torch.allclose(bn.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, ref.running_var, atol=1e-6)
    bn.eval()
    ref.eval()
    assert torch.allclose(bn.forward_masked(x, mask)[mask], ref(x[mask]), atol=1e-6)
