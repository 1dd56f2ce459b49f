"""The window attention as it was before its blocks were precomputed (per-block index arithmetic with host reads), kept as
the reference that the batched, precomputed path must equal (to 1e-5).

`reference_forward(layer, ...)` runs the old algorithm with the weights of a `WindowAttention` `layer`;
`use_reference(monkeypatch)` swaps it in for `WindowAttention.forward`, so whole networks (batch, chunked,
stream) can be run both ways.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from videoanyup.functional.grid import axis_phases
from videoanyup.layers.attention_backend import attention_probabilities
from videoanyup.layers.window_attention import WindowAttention, _pad_run, axis_runs, window_neighbours, window_offsets

QUERY_TILE = 1 << 14  # the old default


def gather_bilinear(table: Tensor, frame: Tensor, position: Tensor, lr_size: tuple[int, int]) -> Tensor:
    """`(Nc·h·w, E)` rows read bilinearly at `(..., 2)` (x, y) positions of frames `frame` → `(..., E)`."""
    h, w = lr_size
    x = position[..., 0].clamp(0, w - 1)
    y = position[..., 1].clamp(0, h - 1)
    x0, y0 = x.floor(), y.floor()
    fx, fy = (x - x0).unsqueeze(-1), (y - y0).unsqueeze(-1)
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp_max(w - 1), (y0 + 1).clamp_max(h - 1)
    base = frame.expand_as(x0) * (h * w)

    def rows(yy, xx):
        index = base + yy * w + xx
        return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[-1])

    fx, fy = fx.to(table.dtype), fy.to(table.dtype)
    top = torch.lerp(rows(y0, x0), rows(y0, x1), fx)
    bottom = torch.lerp(rows(y1, x0), rows(y1, x1), fx)
    return torch.lerp(top, bottom, fy)


def outside_extent(position: Tensor, lr_size: tuple[int, int]) -> Tensor:
    h, w = lr_size
    x, y = position[..., 0], position[..., 1]
    return (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)


def old_plan(layer, lr_size, hr_size, device):
    rows, cols = axis_runs(lr_size[0], hr_size[0]), axis_runs(lr_size[1], hr_size[1])
    index, valid = window_neighbours(lr_size[0], lr_size[1], layer.window)
    mask = torch.zeros(valid.shape, device=device).masked_fill(~valid.to(device), float("-inf"))
    classes = old_prior_classes(layer, lr_size, hr_size, rows, cols)
    return dict(lr_size=lr_size, hr_size=hr_size, rows=rows, cols=cols, index=index.to(device), mask=mask, classes=classes)


def old_prior_classes(layer, lr_size, hr_size, rows, cols):
    if layer.prior is None:
        return None
    row_period = axis_phases(lr_size[0], hr_size[0], 0, 0).period
    col_period = axis_phases(lr_size[1], hr_size[1], 0, 0).period
    row_patterns, row_class = torch.unique(rows.slots.clamp_min(0) % row_period, dim=0, return_inverse=True)
    col_patterns, col_class = torch.unique(cols.slots.clamp_min(0) % col_period, dim=0, return_inverse=True)
    kr, kc = row_patterns.shape[0], col_patterns.shape[0]
    if kr * kc * rows.longest * cols.longest * len(window_offsets(layer.window)) * layer.heads > 1 << 24:
        return None
    if kr * kc > 4096:
        return None
    row_first = [int((row_class == i).nonzero()[0]) for i in range(kr)]
    col_first = [int((col_class == j).nonzero()[0]) for j in range(kc)]
    classes = []
    for i in row_first:
        for j in col_first:
            region = (int(rows.start[i]), int(rows.start[i + 1]), int(cols.start[j]), int(cols.start[j + 1]))
            if region[1] <= region[0] or region[3] <= region[2]:
                classes.append(None)
                continue
            prior = layer.prior(lr_size, hr_size, region)
            prior = _pad_run(_pad_run(prior, rows.longest, 2), cols.longest, 3)
            classes.append(rearrange(prior, "o e r s -> e (r s) o"))
    filler = next(c for c in classes if c is not None)
    table = torch.stack([filler if c is None else c for c in classes])
    return table.contiguous(), row_class, col_class, kc


def reference_forward(layer, guidance, key_feats, values, *, query_tile=None, out=None, plan=None, neighbours=None):
    """The old `WindowAttention.forward` (`plan` is ignored: the old plan is rebuilt here)."""
    n, c, h, w = values.shape
    hr_size = (int(guidance.shape[-2]), int(guidance.shape[-1]))
    plan = old_plan(layer, (h, w), hr_size, values.device)
    if out is None:
        out = values.new_empty(n, c, *hr_size)
    tile = QUERY_TILE if query_tile is None else query_tile
    keys = layer.key(key_feats.to(layer.key.weight.dtype))
    keys_flat = torch.cat([rearrange(keys, "n e h w -> n (h w) e"), keys.new_zeros(n, 1, keys.shape[1])], dim=1)
    values_flat = torch.cat([rearrange(values, "n c h w -> n (h w) c"), values.new_zeros(n, 1, c)], dim=1)
    tables = None
    if neighbours is not None:
        other_keys = layer.key(neighbours.keys.to(layer.key.weight.dtype))
        tables = (
            rearrange(other_keys, "n e h w -> (n h w) e"),
            rearrange(neighbours.values, "n c h w -> (n h w) c"),
            neighbours,
        )
    per_cell = plan["rows"].longest * plan["cols"].longest
    cells = max(1, tile // (per_cell * n))
    block_rows, block_cols = (max(1, cells // w), w) if cells >= w else (1, cells)
    for i0 in range(0, h, block_rows):
        i1 = min(h, i0 + block_rows)
        for j0 in range(0, w, block_cols):
            _block(layer, guidance, keys_flat, values_flat, plan, (i0, i1, j0, min(w, j0 + block_cols)), out, tables)
    return out


def _block_prior(layer, plan, block, device):
    i0, i1, j0, j1 = block
    classes, rows, cols = plan["classes"], plan["rows"], plan["cols"]
    if classes is not None:
        table, row_class, col_class, col_classes = classes
        rc, cc = row_class[i0:i1], col_class[j0:j1]
        if bool((rc == rc[0]).all()) and bool((cc == cc[0]).all()):
            return table[int(rc[0]) * col_classes + int(cc[0])][None]
        flat = (rc[:, None] * col_classes + cc[None, :]).reshape(-1).to(device)
        return table.index_select(0, flat)
    top, bottom = int(rows.start[i0]), int(rows.start[i1])
    left, right = int(cols.start[j0]), int(cols.start[j1])
    prior = layer.prior(plan["lr_size"], plan["hr_size"], (top, bottom, left, right))
    row_local = (rows.slots[i0:i1] - top).clamp_min(0).reshape(-1).to(device)
    col_local = (cols.slots[j0:j1] - left).clamp_min(0).reshape(-1).to(device)
    prior = prior.index_select(2, row_local).index_select(3, col_local)
    return rearrange(prior, "o e (hb r) (wb s) -> (hb wb) e (r s) o", hb=i1 - i0, wb=j1 - j0)


def _block(layer, guidance, keys_flat, values_flat, plan, block, out, tables):
    i0, i1, j0, j1 = block
    rows, cols, lr_size = plan["rows"], plan["cols"], plan["lr_size"]
    hb, wb = i1 - i0, j1 - j0
    r, s = rows.longest, cols.longest
    top, bottom = int(rows.start[i0]), int(rows.start[i1])
    left, right = int(cols.start[j0]), int(cols.start[j1])
    if bottom <= top or right <= left:
        return
    n, device = guidance.shape[0], guidance.device
    row_slots, col_slots = rows.slots[i0:i1], cols.slots[j0:j1]
    padded_rows, padded_cols = row_slots.numel() != bottom - top, col_slots.numel() != right - left
    region = guidance[:, :, top:bottom, left:right].to(layer.query.weight.dtype)
    if padded_rows:
        region = region.index_select(2, (row_slots - top).clamp_min(0).reshape(-1).to(device))
    if padded_cols:
        region = region.index_select(3, (col_slots - left).clamp_min(0).reshape(-1).to(device))
    region = rearrange(region, "n c (hb r) (wb s) -> n (hb wb) (r s) c", hb=hb, wb=wb)
    q = F.linear(region, layer.query.weight.flatten(1), layer.query.bias)
    q = rearrange(q, "n m l (e d) -> n m e l d", e=layer.heads)
    cell_ids = (torch.arange(i0, i1, device=device)[:, None] * lr_size[1] + torch.arange(j0, j1, device=device)[None, :]).reshape(-1)
    neighbours = plan["index"].index_select(0, cell_ids)
    k = rearrange(keys_flat[:, neighbours], "n m o (e d) -> n m e o d", e=layer.heads)
    v = values_flat[:, neighbours]
    bias = plan["mask"].index_select(0, cell_ids)[:, None, None, :].to(keys_flat.dtype)
    if layer.prior is not None:
        bias = bias + _block_prior(layer, plan, block, device).to(q.dtype)
    bias = bias[None]
    if tables is not None:
        k, v, bias = _with_neighbours(layer, k, v, bias, tables, cell_ids, lr_size, q.shape[-2])
    probs = attention_probabilities(q, k, bias, backend=layer.backend)
    weights = probs.mean(dim=2).to(v.dtype)
    mixed = torch.matmul(v.transpose(-1, -2), weights.transpose(-1, -2))
    mixed = mixed.view(n, hb, wb, -1, r, s).permute(0, 3, 1, 4, 2, 5)
    target = out[:, :, top:bottom, left:right]
    if not (padded_rows or padded_cols):
        target.unflatten(3, (wb, s)).unflatten(2, (hb, r)).copy_(mixed)
        return
    mixed = mixed.reshape(n, -1, hb * r, wb * s)
    if padded_rows:
        mixed = mixed.index_select(2, (row_slots.reshape(-1) >= 0).nonzero().squeeze(1).to(device))
    if padded_cols:
        mixed = mixed.index_select(3, (col_slots.reshape(-1) >= 0).nonzero().squeeze(1).to(device))
    target.copy_(mixed)


def _with_neighbours(layer, k, v, bias, tables, cell_ids, lr_size, queries):
    key_table, value_table, nb = tables
    n, cells = k.shape[:2]
    d, kk = nb.frame.shape[1], nb.cells.shape[0]
    centre = nb.centre.flatten(3).index_select(3, cell_ids)
    position = centre.permute(0, 3, 1, 2)[:, :, :, None, :] + nb.cells
    kt = gather_bilinear(key_table, nb.key_frame[:, None, :, None], position, lr_size)
    vt = gather_bilinear(value_table, nb.frame[:, None, :, None], position, lr_size)
    kt = rearrange(kt, "n m f o (e d) -> n m e (f o) d", e=layer.heads)
    vt = rearrange(vt, "n m f o c -> n m (f o) c")
    outside = outside_extent(position, lr_size)
    extra = nb.bias.permute(0, 2, 1, 3).reshape(n, 1, -1, 1, d * kk)
    if nb.cell_bias is not None:
        per_cell = nb.cell_bias.flatten(3).index_select(3, cell_ids).permute(0, 3, 2, 1)
        extra = extra + per_cell[..., None].expand(*per_cell.shape, kk).reshape(n, cells, -1, 1, d * kk)
    extra = extra.masked_fill(outside.reshape(n, cells, 1, 1, d * kk), float("-inf"))
    heads = k.shape[2]
    own = bias.expand(n, cells, heads, queries, bias.shape[-1])
    extra = extra.to(own.dtype).expand(n, cells, heads, queries, d * kk)
    return torch.cat([k, kt.to(k.dtype)], dim=3), torch.cat([v, vt.to(v.dtype)], dim=2), torch.cat([own, extra], dim=-1)


def use_reference(monkeypatch) -> None:
    """Run every `WindowAttention` through the old algorithm."""
    monkeypatch.setattr(WindowAttention, "forward", reference_forward)
