"""Ten more models no calibration is fitted on, of the constructs library models use: the
second held-out set of the device-model benchmarks (`unseen_more_models.py`).

EfficientNet-style MBConv blocks (squeeze-excite, SiLU, stochastic depth in train mode); a
U-Net (GroupNorm, InstanceNorm, transposed conv, concatenated skips, bilinear upsampling); a
TCN (weight-normed dilated causal Conv1d, PReLU); a Conformer (GLU, depthwise Conv1d,
BatchNorm1d, nn.MultiheadAttention); the stock nn.TransformerEncoder on token ids; a 2-layer
bidirectional GRU; Swin-style shifted-window attention (torch.roll, a relative-bias
parameter); a wav2vec-style encoder of a raw waveform; PixelShuffle, reflect padding, ELU,
Mish and adaptive max pooling; einsum, bmm, F.normalize and cumsum. Each builder returns the
same weights every call (`unseen_models._seeded`). On the command line as
``more_unseen_models:efficient_like`` with ``benchmarks/`` on ``PYTHONPATH``; `CASES` gives
each one's input and the updates the benchmark trains.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unseen_models import _seeded


class SE(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1); self.fc2 = nn.Conv2d(c // r, c, 1)
    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(s))))


class MBConv(nn.Module):
    def __init__(self, cin, cout, stride, expand=4, drop=0.1):
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU())
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.SiLU())
        self.se = SE(mid)
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.res = stride == 1 and cin == cout
        self.drop = drop
    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        if self.res:
            if self.training and self.drop > 0:
                keep = torch.rand(x.shape[0], 1, 1, 1) >= self.drop
                y = y * keep / (1 - self.drop)
            y = y + x
        return y


class EfficientLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU())
        self.blocks = nn.Sequential(MBConv(16, 16, 1), MBConv(16, 24, 2), MBConv(24, 24, 1),
                                    MBConv(24, 40, 2), MBConv(40, 40, 1))
        self.head = nn.Sequential(nn.Conv2d(40, 96, 1, bias=False), nn.BatchNorm2d(96), nn.SiLU())
        self.fc = nn.Linear(96, 10)
    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.head(self.blocks(self.stem(x))), 1), 1))


class UNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU())
        self.e2 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.GroupNorm(8, 32), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(32, 64, 3, 2, 1), nn.GroupNorm(8, 64), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(64, 32, 2, 2)
        self.d2 = nn.Sequential(nn.Conv2d(64, 32, 3, padding=1), nn.InstanceNorm2d(32, affine=True), nn.LeakyReLU(0.1))
        self.d1 = nn.Sequential(nn.Conv2d(32 + 16, 16, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(16, 4, 1)
    def forward(self, x):
        a = self.e1(x); b = self.e2(a); c = self.e3(b)
        d = self.d2(torch.cat([self.up2(c), b], 1))
        u = F.interpolate(d, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out(self.d1(torch.cat([u, a], 1))).mean((2, 3))


class TCNBlock(nn.Module):
    def __init__(self, c, dilation):
        super().__init__()
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(c, c, 3, dilation=dilation))
        self.pad = 2 * dilation
        self.act = nn.PReLU(c)
    def forward(self, x):
        return x + self.act(self.conv(F.pad(x, (self.pad, 0))))


class TCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Conv1d(12, 32, 1)
        self.blocks = nn.Sequential(*[TCNBlock(32, d) for d in (1, 2, 4, 8)])
        self.head = nn.Linear(32, 6)
    def forward(self, x):
        return self.head(self.blocks(self.inp(x))[:, :, -1])


class ConformerBlock(nn.Module):
    def __init__(self, d=48, heads=4):
        super().__init__()
        self.ff1 = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.SiLU(), nn.Dropout(0.1), nn.Linear(2 * d, d))
        self.ln_att = nn.LayerNorm(d)
        self.att = nn.MultiheadAttention(d, heads, dropout=0.1, batch_first=True)
        self.ln_conv = nn.LayerNorm(d)
        self.pw1 = nn.Conv1d(d, 2 * d, 1); self.dw = nn.Conv1d(d, d, 7, padding=3, groups=d)
        self.bn = nn.BatchNorm1d(d); self.pw2 = nn.Conv1d(d, d, 1)
        self.ln_out = nn.LayerNorm(d)
    def forward(self, x):
        x = x + 0.5 * self.ff1(x)
        h = self.ln_att(x); x = x + self.att(h, h, h, need_weights=False)[0]
        c = self.ln_conv(x).transpose(1, 2)
        c = self.pw2(F.silu(self.bn(self.dw(F.glu(self.pw1(c), dim=1)))))
        return self.ln_out(x + c.transpose(1, 2))


class ConformerLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.sub = nn.Sequential(nn.Conv1d(40, 48, 3, 2, 1), nn.GELU())
        self.blocks = nn.Sequential(ConformerBlock(), ConformerBlock())
        self.head = nn.Linear(48, 12)
    def forward(self, x):  # (B, 40 mel, T)
        h = self.sub(x).transpose(1, 2)
        return self.head(self.blocks(h).mean(1))


class StockTransformer(nn.Module):
    def __init__(self, vocab=500, d=64, length=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, d, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, length, d))
        layer = nn.TransformerEncoderLayer(d, 4, 128, dropout=0.1, batch_first=True, norm_first=True, activation="gelu")
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 5)
    def forward(self, ids):
        h = self.enc(self.emb(ids) + self.pos[:, : ids.shape[1]])
        return self.head(self.norm(h[:, 0]))


class BiGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(20, 32, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(64, 8)
    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out[:, -1])


class WindowAttention(nn.Module):
    def __init__(self, d, heads, win):
        super().__init__()
        self.h, self.win = heads, win
        self.qkv = nn.Linear(d, 3 * d); self.proj = nn.Linear(d, d)
        self.bias = nn.Parameter(torch.zeros(heads, win * win, win * win))
    def forward(self, x):  # (B*nW, win*win, d)
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.h, C // self.h).permute(2, 0, 3, 1, 4)
        a = (q * (C // self.h) ** -0.5) @ k.transpose(-2, -1) + self.bias
        return self.proj((a.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C))


class SwinBlock(nn.Module):
    def __init__(self, d, win, shift):
        super().__init__()
        self.win, self.shift = win, shift
        self.n1 = nn.LayerNorm(d); self.attn = WindowAttention(d, 2, win)
        self.n2 = nn.LayerNorm(d); self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
    def forward(self, x):  # (B, H, W, C)
        B, H, W, C = x.shape; w = self.win
        h = self.n1(x)
        if self.shift:
            h = torch.roll(h, (-self.shift, -self.shift), (1, 2))
        h = h.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)
        h = self.attn(h).view(B, H // w, W // w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)
        if self.shift:
            h = torch.roll(h, (self.shift, self.shift), (1, 2))
        x = x + h
        return x + self.mlp(self.n2(x))


class SwinLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 32, 4, 4)
        self.blocks = nn.Sequential(SwinBlock(32, 4, 0), SwinBlock(32, 4, 2))
        self.norm = nn.LayerNorm(32); self.head = nn.Linear(32, 10)
    def forward(self, x):
        h = self.patch(x).permute(0, 2, 3, 1)
        return self.head(self.norm(self.blocks(h)).mean((1, 2)))


class Wav2VecLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv1d(1, 32, 10, 5, bias=False); self.gn = nn.GroupNorm(32, 32)
        self.convs = nn.ModuleList([nn.Conv1d(32, 32, 3, 2, bias=False) for _ in range(3)])
        self.proj = nn.Linear(32, 48); self.ln = nn.LayerNorm(48)
        self.head = nn.Linear(48, 6)
    def forward(self, wav):  # (B, 16000)
        h = F.gelu(self.gn(self.c0(wav.unsqueeze(1))))
        for c in self.convs:
            h = F.gelu(c(h))
        h = self.ln(self.proj(h.transpose(1, 2)))
        return self.head(h.mean(1))


class PixelNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1, padding_mode="reflect"); self.n1 = nn.InstanceNorm2d(16)
        self.c2 = nn.Conv2d(16, 64, 3, 2, 1); self.ps = nn.PixelShuffle(2)
        self.c3 = nn.Conv2d(16, 16, 3, padding=1); self.pool = nn.AdaptiveMaxPool2d(4)
        self.head = nn.Linear(256, 10); self.elu = nn.ELU()
    def forward(self, x):
        h = self.elu(self.n1(self.c1(x)))
        h = self.ps(F.hardswish(self.c2(h))) + h
        h = F.mish(self.c3(h))
        return self.head(torch.flatten(self.pool(h), 1))


class EinsumNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(16, 32); self.w = nn.Parameter(torch.randn(4, 32, 8) * 0.1)
        self.gate = nn.Linear(32, 32); self.out = nn.Linear(32, 3)
    def forward(self, x):  # (B, T, 16)
        h = self.emb(x)
        heads = torch.einsum("btd,hdk->bhtk", h, self.w)
        att = torch.bmm(F.normalize(heads.flatten(0, 1), dim=-1), F.normalize(heads.flatten(0, 1), dim=-1).transpose(1, 2))
        mixed = torch.einsum("bij,bjk->bik", att.softmax(-1), heads.flatten(0, 1)).reshape(h.shape[0], 4, h.shape[1], 8)
        h = h + mixed.permute(0, 2, 1, 3).reshape_as(h) * torch.sigmoid(self.gate(h))
        return self.out(h.cumsum(1)[:, -1] / h.shape[1])



def _builder(cls):
    """A builder of `cls` with the same weights every call (`unseen_models._seeded`)."""
    def build() -> nn.Module:
        return _seeded(cls)
    return build


efficient_like, unet_like, tcn = _builder(EfficientLike), _builder(UNetLike), _builder(TCN)
conformer_like, stock_transformer = _builder(ConformerLike), _builder(StockTransformer)
bigru, swin_like, wav2vec_like = _builder(BiGRU), _builder(SwinLike), _builder(Wav2VecLike)
pixel_net, einsum_net = _builder(PixelNet), _builder(EinsumNet)

# (builder, the CLI's input options): images as --input-shape, other inputs as --input specs
CASES = [("efficient_like", ["--input-shape", "1,3,96,96"]),
         ("unet_like", ["--input-shape", "1,3,64,64"]),
         ("tcn", ["--input", "float32[1,12,256]"]),
         ("conformer_like", ["--input", "float32[1,40,100]"]),
         ("stock_transformer", ["--input", "int64[1,32]"]),
         ("bigru", ["--input", "float32[1,32,20]"]),
         ("swin_like", ["--input-shape", "1,3,64,64"]),
         ("wav2vec_like", ["--input", "float32[1,8000]"]),
         ("pixel_net", ["--input-shape", "1,3,64,64"]),
         ("einsum_net", ["--input", "float32[1,32,16]"])]
