"""Mask decoder rewrite for inference: :class:`FastMaskDecoder` (applied to an inference copy).

Same weights and the same math as :class:`~pocketsam.models.mask_decoder.MaskDecoder`
(float32 rounding differences only), organised for speed:

* **Upscaling.** SAM's ``ConvTranspose2d(k=2, s=2) → LayerNorm2d → GELU →
  ConvTranspose2d(k=2, s=2) → GELU`` never overlaps its outputs, so each transposed
  convolution is a per-pixel linear layer to ``4·C_out`` channels followed by a 2×2 pixel
  shuffle. Every step after it is per pixel too (LayerNorm over channels, GELU, the
  hypernetwork dot product), so the whole head runs on unshuffled channels-last data and
  only the final 1–3 mask logits are shuffled into place — instead of the 32-channel
  feature map, which is the largest tensor of the decoder.
* **Only the masks asked for.** ``multimask_output=True`` computes masks 1–3, ``False``
  mask 0 (or, for TinySAM's ``multimask_only`` decoder, the best of 1–3).
* **Attention** through :class:`FastTwoWayTransformer` (below).
* **Bounded memory**: prompts go through in chunks of :attr:`FastMaskDecoder.chunk`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pocketsam.models.common import LayerNorm2d
from pocketsam.models.mask_decoder import MaskDecoder, best_multimask
from pocketsam.models.transformer import TwoWayTransformer
from pocketsam.runtime.fuse import FusedLinear


def _as_linear(conv: nn.ConvTranspose2d) -> nn.Linear:
    cin, cout = conv.in_channels, conv.out_channels
    lin = nn.Linear(cin, 4 * cout, bias=conv.bias is not None,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        # weight (cin, cout, ky, kx) → rows ordered (ky, kx, cout)
        lin.weight.copy_(conv.weight.permute(2, 3, 1, 0).reshape(4 * cout, cin))
        if conv.bias is not None:
            lin.bias.copy_(conv.bias.repeat(4))
    return lin.requires_grad_(False)


def _matches(seq: nn.Module) -> bool:
    if not isinstance(seq, nn.Sequential) or len(seq) != 5:
        return False
    c1, ln, a1, c2, a2 = seq
    def ok(c):
        return (type(c) is nn.ConvTranspose2d and c.kernel_size == (2, 2) and c.stride == (2, 2)
                and c.padding == (0, 0) and c.output_padding == (0, 0) and c.groups == 1
                and c.dilation == (1, 1))
    gelu = all(type(a) is nn.GELU and a.approximate == "none" for a in (a1, a2))
    return ok(c1) and ok(c2) and type(ln) is LayerNorm2d and gelu


# ----------------------------------------------------------------------------------------
# Two-way transformer with the image side reduced to skinny GEMMs
# ----------------------------------------------------------------------------------------
#
# SAM's decoder attends between T ≈ 7 prompt tokens and N = 64·64 image positions. Run as
# written, every attention projects the N×C image stream of *every prompt* through a C×C/2
# matrix (q/k/v projections) and back (out projection): ~3.5 GFLOP per prompt, most of it
# moving B×N×C tensors through memory. Re-associating the products moves every projection
# onto the T-token side, where it is nearly free:
#
# token → image (tokens query the image; k = v = image):
#   scores[h,t,n] = q[t,h]·(Wk_h x_n + bk_h) = (q[t,h] Wk_h)·x_n + const(t)   (softmax drops const)
#   out[t,h]      = Σ_n p[h,t,n] (Wv_h x_n + bv_h) = Wv_h (Σ_n p[h,t,n] x_n) + bv_h   (Σ_n p = 1)
# image → token (the image queries the tokens):
#   scores[n,h,t] = (Wq_h x_n + bq_h)·k[t,h] = x_n·(Wq_hᵀ k[t,h]) + bq_h·k[t,h]
#   out[n]        = Σ_h Σ_t p[n,h,t] (Wo_h v[t,h]) + bo
#
# so each attention costs two GEMMs of N × C × (heads·T) instead of projections of N × C × C.
# When all prompts share one image (no mask input) the first layer's image-side GEMMs are
# batched over all prompts as one wide GEMM. Same math; float32 rounding differences only.


def _plain_attention(attn: nn.Module) -> bool:
    return all(type(getattr(attn, n, None)) is nn.Linear for n in ("q_proj", "k_proj", "v_proj", "out_proj"))


def _token_to_image(attn: nn.Module, q_tokens: torch.Tensor, keys: torch.Tensor, keys_pe: torch.Tensor) -> torch.Tensor:
    """``attn(q=q_tokens, k=keys_pe, v=keys)`` with ``keys_pe = keys + key_pe``.

    q_tokens: (B, T, C); keys, keys_pe: (1 or B, N, C) → (B, T, C).
    """
    b, t, c = q_tokens.shape
    h = attn.num_heads
    d = attn.internal_dim // h
    q = attn.q_proj(q_tokens).view(b, t, h, d)
    qk = torch.einsum("bthd,hdc->bhtc", q, attn.k_proj.weight.view(h, d, c)) * d**-0.5  # (B, H, T, C)
    if keys.shape[0] == 1 and b > 1:  # one image for every prompt: one wide GEMM
        probs = (qk.reshape(b * h * t, c) @ keys_pe[0].T).softmax(-1)
        mixed = (probs @ keys[0]).view(b, h, t, c)
    else:
        probs = torch.bmm(qk.reshape(b, h * t, c), keys_pe.expand(b, -1, -1).transpose(1, 2)).softmax(-1)
        mixed = torch.bmm(probs, keys.expand(b, -1, -1)).view(b, h, t, c)
    out = torch.einsum("bhtc,hdc->bthd", mixed, attn.v_proj.weight.view(h, d, c)) + attn.v_proj.bias.view(h, d)
    return attn.out_proj(out.reshape(b, t, h * d))


def _image_to_token(
    attn: nn.Module, keys: torch.Tensor, keys_pe: torch.Tensor, k_tokens: torch.Tensor, v_tokens: torch.Tensor
) -> torch.Tensor:
    """``keys + attn(q=keys_pe, k=k_tokens, v=v_tokens)``: the residual is accumulated by the
    output GEMM itself (in place when ``keys`` is already per prompt).

    keys, keys_pe: (1 or B, N, C); k_tokens, v_tokens: (B, T, C) → (B, N, C).
    """
    b, t, c = k_tokens.shape
    h = attn.num_heads
    d = attn.internal_dim // h
    scale = d**-0.5
    k = attn.k_proj(k_tokens).view(b, t, h, d)
    v = attn.v_proj(v_tokens).view(b, t, h, d)
    # columns ordered (token, head) so the softmax over tokens runs on a strided middle dim,
    # far faster than a softmax over a contiguous run of T ≈ 7 values
    g = torch.einsum("bthd,hdc->bthc", k, attn.q_proj.weight.view(h, d, c)).reshape(b, t * h, c) * scale
    g_bias = torch.einsum("bthd,hd->bth", k, attn.q_proj.bias.view(h, d)).reshape(b, 1, t * h) * scale
    # every head's weights sum to 1 over the tokens, so out_proj's bias is spread over the H heads
    values = torch.einsum("bthd,chd->bthc", v, attn.out_proj.weight.view(c, h, d)) + attn.out_proj.bias / h
    values = values.reshape(b, t * h, c)
    n = keys_pe.shape[1]
    if keys.shape[0] == 1 and b > 1:
        scores = (keys_pe[0] @ g.reshape(b * t * h, c).T).view(n, b, t * h).transpose(0, 1)  # (B, N, T·H) view
        scores = scores + g_bias
    else:
        scores = torch.baddbmm(g_bias, keys_pe.expand(b, -1, -1), g.transpose(1, 2))
    probs = scores.view(b, n, t, h).softmax(-2).view(b, n, t * h)
    probs, values = probs.to(keys.dtype), values.to(keys.dtype)  # one dtype under autocast
    if keys.shape[0] == b:
        return keys.baddbmm_(probs, values)
    return torch.baddbmm(keys.expand(b, -1, -1), probs, values)


class FastTwoWayTransformer(nn.Module):
    """Drop-in for :class:`~pocketsam.models.transformer.TwoWayTransformer` at inference
    (same weights, same forward signature), computing attention as described above."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.layers = transformer.layers
        self.final_attn_token_to_image = transformer.final_attn_token_to_image
        self.norm_final_attn = transformer.norm_final_attn

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding: (1 or B, C, H, W) (1: one image for all B prompts, computed
        once); image_pe: (1 or B, C, H, W); point_embedding: (B, T, C) → (B, T, C), (B, H·W, C)."""
        b = point_embedding.shape[0]
        keys = image_embedding.flatten(2).transpose(1, 2)
        keys = keys.clone(memory_format=torch.contiguous_format)  # always our own: updated in place below
        key_pe = image_pe[:1].flatten(2).transpose(1, 2)
        keys_pe = keys + key_pe
        queries = point_embedding
        # TwoWayAttentionBlock.forward restated around the two helpers above: keys + key_pe is
        # formed once per layer for both cross-attentions, and the image-side residual is
        # accumulated inside the output GEMM (in place) instead of in a separate pass.
        for layer in self.layers:
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(queries, queries, queries)
            else:
                q = queries + point_embedding
                queries = queries + layer.self_attn(q, q, queries)
            queries = layer.norm1(queries)
            q = queries + point_embedding
            queries = layer.norm2(queries + _token_to_image(layer.cross_attn_token_to_image, q, keys, keys_pe))
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + point_embedding
            keys = layer.norm4(_image_to_token(layer.cross_attn_image_to_token, keys, keys_pe, q, queries))
            keys_pe = keys + key_pe
        q = queries + point_embedding
        queries = self.norm_final_attn(queries + _token_to_image(self.final_attn_token_to_image, q, keys, keys_pe))
        return queries, keys.expand(b, -1, -1)


def fast_transformer(decoder: nn.Module) -> nn.Module:
    """Replace ``decoder.transformer`` by :class:`FastTwoWayTransformer` when it is SAM's
    two-way transformer with plain linear projections (in place). Returns ``decoder``."""

    t = getattr(decoder, "transformer", None)
    if type(t) is TwoWayTransformer:
        attns = [t.final_attn_token_to_image]
        for layer in t.layers:
            attns += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
        if all(_plain_attention(a) for a in attns):
            decoder.transformer = FastTwoWayTransformer(t)
    return decoder


class FastMaskDecoder(nn.Module):
    """Drop-in for a :class:`~pocketsam.models.mask_decoder.MaskDecoder` at inference: the
    same ``forward`` arguments and outputs; computed as described in the module docstring."""

    #: prompts decoded together; bounds the B×H·W×C working set to cache-friendly sizes.
    chunk = 2

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder
        self.multimask_only = decoder.multimask_only
        self.num_mask_tokens = decoder.num_mask_tokens
        fast_transformer(decoder)
        up = decoder.output_upscaling
        self.fused = _matches(up)
        if self.fused:
            c1, ln, _, c2, _ = up
            self.c1, self.c2 = c1.out_channels, c2.out_channels
            self.lin1 = FusedLinear(_as_linear(c1), "none")
            self.norm_weight, self.norm_bias, self.eps = ln.weight, ln.bias, ln.eps
            self.lin2 = FusedLinear(_as_linear(c2), "gelu")

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Shapes as :meth:`MaskDecoder.forward`: masks (B, M, 4H, 4W), iou_pred (B, M)."""
        b = sparse_prompt_embeddings.shape[0]
        if b <= self.chunk:
            return self._forward(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output)
        outs = []
        for i in range(0, b, self.chunk):
            part = slice(i, i + self.chunk)
            emb = image_embeddings if image_embeddings.shape[0] == 1 else image_embeddings[part]
            dense = dense_prompt_embeddings if dense_prompt_embeddings.shape[0] == 1 else dense_prompt_embeddings[part]
            outs.append(self._forward(emb, image_pe, sparse_prompt_embeddings[part], dense, multimask_output))
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def _forward(self, image_embeddings, image_pe, sparse, dense, multimask_output):
        d = self.decoder
        b = sparse.shape[0]
        tokens, src = d.transformer_inputs(image_embeddings, sparse, dense)
        _, c, h, w = src.shape
        hs, keys = d.transformer(src, image_pe, tokens)  # keys (B, H·W, C)
        iou_all = d.iou_prediction_head(hs[:, 0])
        pick_best = not multimask_output and self.multimask_only
        idx = list(range(1, self.num_mask_tokens)) if (multimask_output or pick_best) else [0]
        hyper = torch.stack([d.output_hypernetworks_mlps[i](hs[:, 1 + i]) for i in idx], dim=1)  # (B, m, C2)
        iou = iou_all[:, idx]
        if pick_best:
            best = best_multimask(iou_all) - 1  # a row of idx = 1..M
            rows = torch.arange(b, device=iou.device)
            hyper, iou = hyper[rows, best].unsqueeze(1), iou[rows, best].unsqueeze(1)
        if self.fused:
            masks = self._head(keys, hyper, h, w)
        else:
            up = d.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
            masks = (hyper @ up.flatten(2)).view(b, -1, up.shape[2], up.shape[3])
        return masks, iou

    def _head(self, keys: torch.Tensor, hyper: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """keys (B, H·W, C), hyper (B, m, C2) → mask logits (B, m, 4H, 4W)."""
        b, m = hyper.shape[:2]
        y = self.lin1(keys).view(b, h * w, 4, self.c1)  # first upscaling, unshuffled
        y = F.gelu(F.layer_norm(y, (self.c1,), self.norm_weight, self.norm_bias, self.eps))
        y = self.lin2(y)  # (B, H·W, 4, 4·C2): second upscaling with its GELU, unshuffled
        logits = torch.bmm(y.view(b, h * w * 16, self.c2), hyper.transpose(1, 2))  # (B, H·W·16, m)
        # pixel (4y + 2·ky1 + ky2, 4x + 2·kx1 + kx2) ← (y, x, ky1, kx1, ky2, kx2)
        logits = logits.view(b, h, w, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return logits.reshape(b, m, 4 * h, 4 * w)


def fast_mask_decoder(decoder: nn.Module) -> nn.Module:
    """:class:`FastMaskDecoder` around ``decoder`` when it is SAM's mask decoder, else ``decoder``."""

    return FastMaskDecoder(decoder) if isinstance(decoder, MaskDecoder) else decoder
