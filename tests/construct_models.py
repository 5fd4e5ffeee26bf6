"""One small model per construct of issue 17, written here (not any library's code).

nn.MultiheadAttention; cross-covariance attention over F.normalize'd q, k (XCiT/EdgeNeXt);
ConvNeXt-V2's global response norm (x.norm, addcmul); GPT-2's Conv1D (addmm); attention whose
dropout is active only in training; SDPA with a trainable bias mask that is cached as a buffer
in eval mode (TinyViT); a LayerNorm on a token slice; a positional encoding that reads
weight.device (sin/cos, cumsum, pow, rsqrt); shifted windows (roll, pad); timm's functional
drop path (new_empty, bernoulli_, div_) beside its BatchNormAct2d and squeeze-excite; tensor
methods that write in place (mul_ by a trained scale, sigmoid_, masked_fill_, sub_, /=) and a
scalar divided by a tensor; tensors read for their shape or dtype only (expand_as, type_as,
.to(other)); an encoder layer given a key padding mask and GPT-2's causal mask sliced from a
buffer (fx cannot trace them: tested with the hooks tracer). `CONSTRUCT_MODELS` maps a name
to a `ModelCase` with tiny shapes.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from tests.sequence_models import PostNormLayer, QKVAttention
from tests.varied_models import ModelCase


# ---- nn.MultiheadAttention ViT ------------------------------------------------------------------

class MHABlock(nn.Module):
    def __init__(self, dim, heads, need_weights=False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.need_weights = need_weights

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=self.need_weights)[0]
        return x + self.mlp(self.norm2(x))


class MHAViT(nn.Module):
    def __init__(self, img=8, patch=4, dim=16, depth=3, heads=2, num_classes=5,
                 need_weights=False):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.Sequential(*[MHABlock(dim, heads, need_weights) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.head(self.norm(self.blocks(x))[:, 0])


# ---- XCiT-style cross-covariance attention -----------------------------------------------------

class XCA(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 4, 1)
        q, k, v = qkv.unbind(0)  # B, heads, C/heads, N
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        x = (attn.softmax(dim=-1) @ v).permute(0, 3, 1, 2).reshape(B, N, C)
        return self.proj(x)


class XCANet(nn.Module):
    def __init__(self, dim=16, heads=2, depth=2, num_classes=3):
        super().__init__()
        self.blocks = nn.ModuleList(nn.ModuleDict({"norm": nn.LayerNorm(dim),
                                                   "attn": XCA(dim, heads)})
                                    for _ in range(depth))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        for block in self.blocks:
            x = x + block["attn"](block["norm"](x))
        return self.head(x.mean(1))


# ---- ConvNeXt-V2 block with global response norm -----------------------------------------------

class GRN(nn.Module):
    """Channels-last global response norm: x + bias + weight · x · (‖x‖ / mean ‖x‖)."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        gx = x.norm(p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
        shape = (1, 1, 1, -1)
        return x + torch.addcmul(self.bias.view(shape), self.weight.view(shape), x * nx)


class ConvNeXtV2Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        shortcut = x
        x = self.norm(self.conv_dw(x).permute(0, 2, 3, 1))
        x = self.fc2(self.grn(self.act(self.fc1(x))))
        return x.permute(0, 3, 1, 2) + shortcut


class ConvNeXtV2Like(nn.Module):
    def __init__(self, dim=8, depth=2, num_classes=5):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, 4)
        self.blocks = nn.Sequential(*[ConvNeXtV2Block(dim) for _ in range(depth)])
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


# ---- GPT-2 Conv1D (addmm) -----------------------------------------------------------------------

class Conv1D(nn.Module):
    """A linear layer with its weight stored in × out, applied with addmm."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(0.02 * torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class GPT2Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim)
        self.c_attn = Conv1D(3 * dim, dim)
        self.c_proj = Conv1D(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.c_fc = Conv1D(4 * dim, dim)
        self.mlp_proj = Conv1D(dim, 4 * dim)

    def attend(self, x, **sdpa_kw):
        """Causal self-attention of ln_1(x) through Conv1D projections."""
        B, L, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, L, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, **sdpa_kw)
        return self.c_proj(a.transpose(1, 2).reshape(B, L, C))

    def mlp(self, x):
        return self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    def forward(self, x):
        x = x + self.attend(x)
        return x + self.mlp(x)


class GPT2Conv1DNet(nn.Module):
    def __init__(self, dim=16, heads=2, depth=2, num_classes=3):
        super().__init__()
        self.h = nn.ModuleList(GPT2Block(dim, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        for block in self.h:
            x = block(x)
        return self.head(self.ln_f(x)[:, -1])


# ---- attention dropout active only in training --------------------------------------------------

class TrainDropoutAttention(QKVAttention):
    """Fused attention with `dropout_p = p if self.training else 0.0`, and an explicit twin
    whose probabilities go through F.dropout(..., training=self.training)."""

    def __init__(self, dim, heads, p=0.1, fused=True):
        super().__init__(dim, heads)
        self.p, self.fused = p, fused

    def forward(self, x):
        q, k, v = self.split_heads(x)
        if self.fused:
            dropout_p = self.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:
            attn = (q @ k.transpose(-2, -1)) * (x.shape[-1] // self.heads) ** -0.5
            attn = F.dropout(attn.softmax(dim=-1), self.p, self.training)
            out = attn @ v
        return self.merge_heads(out, x.shape)


class PreNormAttentionNet(nn.Module):
    """`depth` pre-norm residual attention blocks from `make_attention()` and a linear head on
    the mean token: the frame the attention constructs below are tested in."""

    def __init__(self, make_attention, dim, depth, num_classes):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
        self.attns = nn.ModuleList(make_attention() for _ in range(depth))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        for norm, attn in zip(self.norms, self.attns):
            x = x + attn(norm(x))
        return self.head(x.mean(1))


class TrainDropoutNet(PreNormAttentionNet):
    def __init__(self, dim=16, heads=2, depth=2, num_classes=3, fused=True):
        super().__init__(lambda: TrainDropoutAttention(dim, heads, fused=fused), dim, depth,
                         num_classes)


# ---- SDPA with a trainable bias mask (TinyViT-style, cached in eval mode) -----------------------

class BiasAttention(QKVAttention):
    def __init__(self, dim, heads, tokens):
        super().__init__(dim, heads)
        offsets = torch.arange(tokens)
        self.attention_biases = nn.Parameter(0.02 * torch.randn(heads, 2 * tokens - 1))
        self.register_buffer("bias_idxs", (offsets[:, None] - offsets[None, :] + tokens - 1),
                             persistent=False)
        self.register_buffer("cached_bias", torch.zeros(heads, tokens, tokens), persistent=False)

    def train(self, mode=True):
        super().train(mode)
        if not mode:  # eval: the bias is computed once and cached (no parameter read)
            with torch.no_grad():
                self.cached_bias.copy_(self.attention_biases[:, self.bias_idxs])
        return self

    def forward(self, x):
        q, k, v = self.split_heads(x)
        bias = self.attention_biases[:, self.bias_idxs] if self.training else self.cached_bias
        return self.merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias), x.shape)


class BiasAttentionNet(PreNormAttentionNet):
    def __init__(self, dim=16, heads=2, tokens=6, depth=2, num_classes=3):
        super().__init__(lambda: BiasAttention(dim, heads, tokens), dim, depth, num_classes)


# ---- LayerNorm on a slice of the token sequence -------------------------------------------------

class SliceNormNet(nn.Module):
    """A class-token readout normalised on its own: norm(x[:, 0:1]) of an N×L×C sequence."""

    def __init__(self, dim=16, num_classes=3):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = F.gelu(self.fc(x))
        return self.head(self.norm(x[:, 0:1]).flatten(1))


# ---- positional encoding reading weight.device (sin, cos, cumsum, pow, rsqrt) --------------------

class SinusoidalPosition(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        weight = self.proj.weight
        ones = torch.ones(x.shape[1], device=weight.device, dtype=weight.dtype)
        pos = torch.cumsum(ones, 0)[:, None]
        freq = torch.exp(torch.arange(0, self.dim, 2, device=weight.device, dtype=weight.dtype)
                         * (-math.log(10000.0) / self.dim))
        pe = torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1)
        return x + self.proj(pe)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class PositionNet(nn.Module):
    def __init__(self, dim=16, num_classes=3):
        super().__init__()
        self.pos = SinusoidalPosition(dim)
        self.norm = RMSNorm(dim)
        self.fc = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.norm(self.pos(x))
        x = x + torch.sin(self.fc(x)) * torch.cos(x)
        return self.head(x.mean(1))


# ---- shifted windows: roll and pad ---------------------------------------------------------------

class ShiftPadNet(nn.Module):
    def __init__(self, dim=8, num_classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 3)
        self.fc = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = F.pad(self.conv(x), (1, 1, 1, 1))
        x = torch.roll(x, shifts=(-1, -1), dims=(2, 3)).permute(0, 2, 3, 1)
        x = self.fc(x)
        return self.head(x.mean((1, 2)))


# ---- text models taking integer token ids ------------------------------------------------------

class BertSelfAttention(nn.Module):
    """Explicit attention as BERT writes it: additive mask, dropout on the probabilities."""

    def __init__(self, dim, heads, p=0.1):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.dropout = nn.Dropout(p)
        self.output = nn.Linear(dim, dim)

    def split(self, x):
        return x.view(x.size(0), x.size(1), self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, extended_mask):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + extended_mask
        context = torch.matmul(self.dropout(scores.softmax(-1)), v).permute(0, 2, 1, 3)
        return self.output(context.reshape(x.shape))


class BertLike(nn.Module):
    """Token ids (N×T int64) and an optional attention mask; RoBERTa-style position ids from
    the ids (cumsum over non-padding tokens), a pooler (tanh) on the first token."""

    def __init__(self, vocab=50, max_len=16, dim=16, heads=2, depth=2, num_classes=3, pad=1):
        super().__init__()
        self.pad = pad
        self.word_embeddings = nn.Embedding(vocab, dim, padding_idx=pad)
        self.position_embeddings = nn.Embedding(max_len + pad + 1, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(0.1)
        self.layers = nn.ModuleList(PostNormLayer(BertSelfAttention(dim, heads), dim)
                                    for _ in range(depth))
        self.pooler = nn.Linear(dim, dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, input_ids, attention_mask=None):
        not_pad = input_ids.ne(self.pad).int()
        positions = torch.cumsum(not_pad, dim=1).type_as(not_pad) * not_pad + self.pad
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions.long())
        x = self.drop(self.norm(x))
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extended = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, extended)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


class GPTBlock(GPT2Block):
    """GPT2Block with dropout: on the attention probabilities (train mode only) and on both
    residual branches."""

    def __init__(self, dim, heads, p=0.1):
        super().__init__(dim, heads)
        self.p = p
        self.drop = nn.Dropout(p)

    def forward(self, x):
        x = x + self.drop(self.attend(x, dropout_p=self.p if self.training else 0.0))
        return x + self.drop(self.mlp(x))


class GPTLike(nn.Module):
    """Token ids (N×T int64) -> token + position embeddings -> causal blocks -> logits over
    the vocabulary from the token embedding's own weight (tied)."""

    def __init__(self, vocab=50, max_len=16, dim=16, heads=2, depth=2):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(max_len, dim)
        self.h = nn.ModuleList(GPTBlock(dim, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], device=self.wte.weight.device)
        x = self.wte(input_ids) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)


# Text models are called with token ids: {name: (factory, inputs)}.
TEXT_MODELS: dict[str, tuple] = {
    "bert_like": (BertLike, ["input_ids:int64[2,8]", "attention_mask:int64[2,8]"]),
    "gpt_like": (GPTLike, "input_ids:int64[2,8]"),
}


# ---- indexing with computed indices: the last real token of each sequence ---------------------

class LastTokenNet(nn.Module):
    """Picks each sequence's last non-zero token (GPT-2's sequence classification) with
    x[rows, lengths]; the indices are computed, so autograd keeps them."""

    def __init__(self, dim=16, num_classes=3):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        lengths = (x.abs().sum(-1) > 0).sum(-1) - 1
        h = torch.tanh(self.fc(x))
        return self.head(h[torch.arange(x.shape[0]), lengths])


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's norm-with-activation: a BatchNorm2d subclass calling F.batch_norm itself."""

    def __init__(self, channels, act=True):
        super().__init__(channels)
        self.act = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps)
        return self.act(x)


def timm_drop_path(x, p: float, training: bool):
    """timm's functional stochastic depth: a per-sample mask made with new_empty, bernoulli_
    and div_ in place; no gradient flows into it, so x * mask keeps only the mask."""
    if p == 0.0 or not training:
        return x
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * mask.div_(1 - p)


class DropPathSE(nn.Module):
    """An EfficientNet-style block: BatchNormAct2d, squeeze-excite on x.mean, drop path."""

    def __init__(self, c=8, mid=16, drop=0.2):
        super().__init__()
        self.drop = drop
        self.pw, self.bn1 = nn.Conv2d(c, mid, 1, bias=False), BatchNormAct2d(mid)
        self.dw = nn.Conv2d(mid, mid, 3, padding="same", groups=mid, bias=False)
        self.bn2 = BatchNormAct2d(mid)
        self.reduce, self.expand = nn.Conv2d(mid, 4, 1), nn.Conv2d(4, mid, 1)
        self.pwl, self.bn3 = nn.Conv2d(mid, c, 1, bias=False), BatchNormAct2d(c, act=False)

    def forward(self, x):
        y = self.bn2(self.dw(self.bn1(self.pw(x))))
        y = y * self.expand(F.silu(self.reduce(y.mean((2, 3), keepdim=True)))).sigmoid()
        return x + timm_drop_path(self.bn3(self.pwl(y)), self.drop, self.training)


class DropPathNet(nn.Module):
    def __init__(self, drop=0.2):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(DropPathSE(drop=drop), DropPathSE(drop=drop))
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class InPlaceNet(nn.Module):
    """Tensor methods that write into their operand: a layer scale multiplied in place with
    a trained gamma (autograd keeps a copy of x), sigmoid_, masked_fill_, sub_ and /= by a
    tensor; and a scalar divided by a tensor (kept: the reciprocal)."""

    def __init__(self, dim=16):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, 4)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        h = self.fc1(x).mul_(self.gamma)
        h = h + self.fc2(h).sigmoid_()
        h = h.masked_fill_(x > 1.5, 0.0).sub_(self.gamma)
        h /= 1.0 + x.abs()
        return self.fc3(h + 1.0 / (h.abs() + 1.0))


class ShapeDonorNet(nn.Module):
    """Tensors read only for their shape or dtype: a free scale broadcast with expand_as, and
    a comparison's mask cast with type_as and .to(other); no gradient flows into the donor,
    so under bias-only nothing keeps the activations for these products."""

    def __init__(self, dim=16):
        super().__init__()
        self.fc, self.head = nn.Linear(dim, dim), nn.Linear(dim, 4)
        self.gamma = nn.Parameter(torch.ones(1, 1, dim))

    def forward(self, x):
        y = self.fc(x)
        y = y * self.gamma.expand_as(y)
        y = y * (x > 0).type_as(y) * (x < 1).to(y)
        return self.head(y)


class PaddingMaskEncoder(nn.Module):
    """nn.TransformerEncoderLayer given a key padding mask computed from the input (a bool,
    made a float mask inside): with dropout off, nn.MultiheadAttention runs SDPA's fused path,
    which keeps the merged N × heads × 1 × S mask, not an L × S one."""

    def __init__(self, dim=16, dropout=0.0):
        super().__init__()
        self.embed, self.head = nn.Linear(6, dim), nn.Linear(dim, 4)
        self.layer = nn.TransformerEncoderLayer(dim, 2, 32, dropout=dropout, batch_first=True)

    def forward(self, x):
        pad = x[..., 0] > 1.0
        return self.head(self.layer(self.embed(x), src_key_padding_mask=pad).mean(1))


class BufferMaskAttention(nn.Module):
    """GPT-2's causal attention as Hugging Face writes it: a bool buffer sliced to the
    sequence length (fx cannot trace the slice: tested with the hooks tracer) and
    torch.where against a scalar tensor (or masked_fill with a value tensor); also the whole
    buffer given to torch.where."""

    def __init__(self, dim=16, max_len=8, sliced=True, fill=False):
        super().__init__()
        self.sliced, self.fill = sliced, fill
        self.qkv, self.head = nn.Linear(dim, 3 * dim), nn.Linear(dim, 4)
        self.register_buffer("bias", torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))
                             .view(1, 1, max_len, max_len), persistent=False)
        self.register_buffer("future", ~self.bias, persistent=False)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (t.view(b, n, 2, d // 2).transpose(1, 2) for t in self.qkv(x).split(d, 2))
        w = q @ k.transpose(-1, -2)
        causal = self.bias[:, :, :n, :n] if self.sliced else self.bias
        if self.fill:  # masked_fill with a value tensor, its mask a view of a buffer
            future = self.future[:, :, :n, :n] if self.sliced else self.future
            w = w.masked_fill(future, torch.tensor(-1e4)).softmax(-1)
        else:
            w = torch.where(causal, w, torch.full([], -1e4, dtype=w.dtype)).softmax(-1)
        return self.head((w @ v).transpose(1, 2).reshape(b, n, d))


CONSTRUCT_MODELS: dict[str, ModelCase] = {
    "mha_vit": ModelCase(MHAViT, (2, 3, 8, 8)),
    "mha_vit_weights": ModelCase(functools.partial(MHAViT, need_weights=True), (2, 3, 8, 8)),
    "xca": ModelCase(XCANet, (2, 6, 16)),
    "convnextv2_grn": ModelCase(ConvNeXtV2Like, (2, 3, 16, 16)),
    "gpt2_conv1d": ModelCase(GPT2Conv1DNet, (2, 6, 16)),
    "train_dropout_sdpa": ModelCase(TrainDropoutNet, (2, 6, 16)),
    "train_dropout_explicit": ModelCase(functools.partial(TrainDropoutNet, fused=False),
                                        (2, 6, 16)),
    "sdpa_bias_mask": ModelCase(BiasAttentionNet, (2, 6, 16)),
    "slice_norm": ModelCase(SliceNormNet, (2, 6, 16)),
    "position_device": ModelCase(PositionNet, (2, 6, 16)),
    "shift_pad": ModelCase(ShiftPadNet, (2, 3, 8, 8)),
    "last_token": ModelCase(LastTokenNet, (2, 6, 16)),
    "timm_drop_path": ModelCase(DropPathNet, (2, 3, 8, 8)),
    "in_place_ops": ModelCase(InPlaceNet, (2, 6, 16)),
    "shape_donors": ModelCase(ShapeDonorNet, (2, 6, 16)),
}



def mha_vit() -> nn.Module:
    """The nn.MultiheadAttention ViT with fixed weights (a CLI import path)."""
    return CONSTRUCT_MODELS["mha_vit"]()


def mlp() -> nn.Module:
    """Linear layers only (a CLI import path: nothing SparseUpdate's format can express)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4))


__all__ = ["CONSTRUCT_MODELS", "TEXT_MODELS", "mha_vit", "mlp"]
