"""TinyViT image encoder, as used by MobileSAM and TinySAM (``vit_t``).

A convolutional first stage (MBConv blocks), then windowed-attention stages with learned
relative attention biases and a depth-wise "local" convolution in each block, and SAM's
neck to ``out_chans`` channels. Parameter names match ``mobile_sam.pt``.

Internally the attention stages keep tokens as a B×H×W×C grid, so the encoder works for
any input size (the official code hard-codes 1024² → 64×64); the result is identical.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pocketsam.models.common import ConvBN, LayerNorm2d


class PatchEmbed(nn.Module):
    """Two stride-2 3×3 conv+BN layers: B×3×S×S → B×C×S/4×S/4."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (1×1 expand, 3×3 depth-wise, 1×1 project) on B×C×H×W."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden, 1)
        self.act1 = nn.GELU()
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvBN(hidden, dim, 1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        return self.act3(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """Change channels (and halve resolution when ``stride == 2``): B×C×H×W → B×H'×W'×C'."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim, 1)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x).permute(0, 2, 3, 1)


class Attention(nn.Module):
    """Window attention with a learned bias per (head, |Δy|, |Δx|) offset.

    The q/k/v projections are interleaved per head (``[q_h, k_h, v_h]`` for each head), as
    in the official checkpoints.
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * self.key_dim * num_heads)
        self.proj = nn.Linear(self.key_dim * num_heads, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        pos = torch.arange(window)
        yy, xx = torch.meshgrid(pos, pos, indexing="ij")
        yy, xx = yy.flatten(), xx.flatten()
        idx = (yy[:, None] - yy[None, :]).abs() * window + (xx[:, None] - xx[None, :]).abs()
        self.register_buffer("attention_bias_idxs", idx, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, C) tokens of B windows → (B, N, C)."""
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.key_dim, dim=3)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=self._bias())
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))

    def _bias(self) -> torch.Tensor:
        """(1, heads, N, N) additive bias. A 4-D mask lets SDPA use its fused CPU kernel
        (a 3-D one falls back to the unfused math path). In eval mode without autograd the
        gather is cached and redone only when ``attention_biases`` changes (in place or
        replaced)."""
        if self.training or torch.is_grad_enabled():
            return self.attention_biases[:, self.attention_bias_idxs].unsqueeze(0)
        p = self.attention_biases
        key = (p.data_ptr(), p._version, p.dtype, p.device, self.attention_bias_idxs.device)
        cache = getattr(self, "_bias_cache", None)
        if cache is None or cache[0] != key:
            with torch.no_grad():
                bias = p[:, self.attention_bias_idxs].unsqueeze(0).contiguous()
            cache = (key, bias)
            self._bias_cache = cache
        return cache[1]


class Mlp(nn.Module):
    """Pre-norm feed-forward block of TinyViT."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention → depth-wise local conv → MLP, on a B×H×W×C grid."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        pad = local_conv_size // 2
        self.local_conv = ConvBN(dim, dim, local_conv_size, 1, pad, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        y = F.pad(x, (0, 0, 0, pad_r, 0, pad_b)) if (pad_b or pad_r) else x
        hp, wp = h + pad_b, w + pad_r
        y = y.view(b, hp // ws, ws, wp // ws, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        y = self.attn(y)
        y = y.view(b, hp // ws, wp // ws, ws, ws, c).transpose(2, 3).reshape(b, hp, wp, c)
        if pad_b or pad_r:
            y = y[:, :h, :w]
        x = x + y
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    """First stage: MBConv blocks on B×C×H×W, then a patch merging."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, out_dim: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    """Attention stage on a B×H×W×C grid, optionally followed by a patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        out_dim: int | None,
        stride: int,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size) for _ in range(depth)
        )
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2))
        return x


class TinyViT(nn.Module):
    """B×3×S×S normalised image → B×out_chans×S/16×S/16 embedding.

    The patch embedding downsamples by 4 and the patch mergings by 2, 2, …, 1 (the last one
    keeps the resolution), so the output stride is 16 for the standard four stages.
    ``num_classes > 0`` keeps the (unused) ImageNet head that official checkpoints carry.
    ``neck_kernel_size`` is 3 in every official checkpoint; 1 makes the neck's second
    convolution ~9× cheaper, which dominates the cost of very small encoders at low input
    sizes (``pocketsam_nano``).
    """

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: tuple[int, ...] = (64, 128, 160, 320),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (2, 4, 5, 10),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        num_classes: int = 1000,
        out_chans: int = 256,
        neck_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        n = len(embed_dims)
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        layers: list[nn.Module] = []
        for i in range(n):
            out_dim = embed_dims[i + 1] if i < n - 1 else None
            stride = 2 if i < n - 2 else 1
            if i == 0:
                layers.append(ConvLayer(embed_dims[0], depths[0], mbconv_expand_ratio, out_dim, stride))
            else:
                layers.append(
                    BasicLayer(
                        embed_dims[i], depths[i], num_heads[i], window_sizes[i],
                        mlp_ratio, local_conv_size, out_dim, stride,
                    )
                )
        self.layers = nn.ModuleList(layers)
        if num_classes > 0:
            self.norm_head = nn.LayerNorm(embed_dims[-1])
            self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=neck_kernel_size, padding=neck_kernel_size // 2, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x.permute(0, 3, 1, 2))
