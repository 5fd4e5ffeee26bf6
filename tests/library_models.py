"""Small models built the way popular model libraries build them, written here.

Each class reproduces constructs of a family (not any library's code): a BatchNorm subclass
that applies its activation in its own forward (through F.batch_norm), LayerNorm over
channels via permute, a Linear subclass head, layer-scale gammas, class token and position
embedding as free parameters, fused and explicit attention, qkv `chunk`/`unbind`, Dropout(p=0)
next to p > 0, stochastic depth (DropPath), optional forward arguments, getattr/shape-heavy
forwards, an LSTM and a GRU. `LIBRARY_MODELS` maps a name to a `ModelCase` (tests/varied_models)
with tiny shapes; `BENCHMARK_SIZES` gives larger ones for benchmarks/profile_vs_fvcore.py.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from tests.varied_models import ModelCase


# ---- building blocks -------------------------------------------------------------------------

class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm whose forward applies dropout and the activation itself (F.batch_norm)."""

    def __init__(self, num_features, act=nn.ReLU, drop=0.0):
        super().__init__(num_features)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x):
        use_batch_stats = self.training or self.running_mean is None
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         use_batch_stats, self.momentum, self.eps)
        return self.act(self.drop(x))


class DropPath(nn.Module):
    """Stochastic depth: x * mask / keep in training, identity when p = 0 or evaluating."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of N×C×H×W, through a permute to channels-last."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ClassifierHead(nn.Linear):
    """A Linear subclass that only adds an attribute (a library's head class)."""

    def __init__(self, in_features, num_classes):
        super().__init__(in_features, num_classes)
        self.pool_type = "avg"


class LayerScale(nn.Module):
    def __init__(self, dim, init=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


# ---- MobileNet / EfficientNet-like: BatchNormAct2d, inverted residuals, DropPath ------------

class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expand, stride, drop_path=0.0):
        super().__init__()
        mid = cin * expand
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = BatchNormAct2d(mid, nn.ReLU6)
        self.conv_dw = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = BatchNormAct2d(mid, nn.ReLU6)
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = BatchNormAct2d(cout, None)
        self.has_skip = stride == 1 and cin == cout
        self.drop_path = DropPath(drop_path) if self.has_skip else nn.Identity()

    def forward(self, x):
        shortcut = x
        x = self.bn1(self.conv_pw(x))
        x = self.bn2(self.conv_dw(x))
        x = self.bn3(self.conv_pwl(x))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class MobileNetLike(nn.Module):
    def __init__(self, width=8, num_classes=5, drop_path=0.1, drop_rate=0.2):
        super().__init__()
        w = width
        self.conv_stem = nn.Conv2d(3, w, 3, 2, 1, bias=False)
        self.bn1 = BatchNormAct2d(w, nn.ReLU6)
        self.blocks = nn.Sequential(
            nn.Sequential(InvertedResidual(w, w, 2, 1, drop_path),
                          InvertedResidual(w, w, 2, 1, drop_path)),
            nn.Sequential(InvertedResidual(w, 2 * w, 2, 2, drop_path),
                          InvertedResidual(2 * w, 2 * w, 2, 1, drop_path)))
        self.conv_head = nn.Conv2d(2 * w, 4 * w, 1, bias=False)
        self.bn2 = BatchNormAct2d(4 * w, nn.ReLU6)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = ClassifierHead(4 * w, num_classes)

    def forward(self, x):
        x = self.bn1(self.conv_stem(x))
        x = self.blocks(x)
        x = self.bn2(self.conv_head(x))
        return self.classifier(self.drop(self.global_pool(x).flatten(1)))


# ---- ConvNeXt-like: LayerNorm2d, depthwise 7x7, channels-last MLP, layer scale ------------

class ConvNeXtBlock(nn.Module):
    def __init__(self, dim, drop_path=0.0):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        shortcut = x
        x = self.conv_dw(x).permute(0, 2, 3, 1)
        x = self.fc2(self.act(self.fc1(self.norm(x))))
        x = (x * self.gamma).permute(0, 3, 1, 2)
        return self.drop_path(x) + shortcut


class ConvNeXtStage(nn.Module):
    def __init__(self, cin, cout, depth, drop_path):
        super().__init__()
        self.downsample = nn.Sequential(LayerNorm2d(cin), nn.Conv2d(cin, cout, 2, 2)) \
            if cin != cout else nn.Identity()
        self.blocks = nn.Sequential(*[ConvNeXtBlock(cout, drop_path) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


class ConvNeXtLike(nn.Module):
    def __init__(self, dims=(8, 16), depth=2, num_classes=5, drop_path=0.1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0]))
        self.stages = nn.Sequential(*[ConvNeXtStage(dims[max(i - 1, 0)], d, depth, drop_path)
                                      for i, d in enumerate(dims)])
        self.norm = nn.LayerNorm(dims[-1])
        self.head = ClassifierHead(dims[-1], num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.head(self.norm(x.mean((2, 3))))


# ---- ViT-like: cls token, pos embed, fused or explicit attention, qkv unbind/chunk ---------

class Attention(nn.Module):
    def __init__(self, dim, heads, fused=True, split="unbind", attn_drop=0.0):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.fused, self.split = fused, split
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x):
        B, N, C = x.shape
        if self.split == "unbind":
            qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            q, k, v = (t.reshape(B, N, self.heads, self.head_dim).transpose(1, 2)
                       for t in (q, k, v))
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim, hidden, approximate="none", drop=0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.drop1(self.act(self.fc1(x))))


class ViTBlock(nn.Module):
    def __init__(self, dim, heads, fused, split, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, fused, split)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim, approximate="tanh")
        self.ls2 = LayerScale(dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class ViTLike(nn.Module):
    def __init__(self, img=16, patch=4, dim=16, depth=2, heads=2, num_classes=5, fused=True,
                 split="unbind", drop_path=0.0):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        tokens = (img // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, tokens + 1, dim))
        self.blocks = nn.Sequential(*[ViTBlock(dim, heads, fused, split, drop_path)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = ClassifierHead(dim, num_classes)

    def forward(self, x, return_features: bool = False):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        x = self.norm(self.blocks(x))
        if return_features:
            return x
        return self.head(x[:, 0])


# ---- MLP-Mixer-like: token mixing through transposes, Dropout(p=0) ----------------------------

class MixerBlock(nn.Module):
    def __init__(self, tokens, dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mlp_tokens = Mlp(tokens, 2 * tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp_channels = Mlp(dim, 2 * dim)

    def forward(self, x):
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))


class MixerLike(nn.Module):
    def __init__(self, img=16, patch=4, dim=16, depth=2, num_classes=5):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*[MixerBlock((img // patch) ** 2, dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(1))


# ---- ResNet-like with a getattr/shape-heavy forward -----------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                        nn.BatchNorm2d(cout)) if stride != 1 or cin != cout \
            else None
        self.zero_init_last = True

    def forward(self, x):
        B, C, H, W = x.shape  # shapes, sizes and attributes are not operators
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out)).reshape(B, -1, x.size(2) // self.conv1.stride[0],
                                                W // getattr(self.conv1, "stride")[1])
        if getattr(self, "zero_init_last", False):
            out = out + shortcut
        return F.relu(out)


class ResNetLike(nn.Module):
    def __init__(self, width=8, num_classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(2)
        self.layers = nn.Sequential(BasicBlock(width, width, 1), BasicBlock(width, width, 1),
                                    BasicBlock(width, 2 * width, 2),
                                    BasicBlock(2 * width, 2 * width, 1))
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layers(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).view(x.shape[0], x.size(1)))


# ---- HF-like encoder: position embeddings, explicit matmul/einsum attention, mask arg -------

class SelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.dropout = nn.Dropout(0.1)

    def split_heads(self, x):
        return x.view(x.size(0), x.size(1), self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, hidden, attention_mask=None):
        q = self.split_heads(self.query(hidden))
        k = self.split_heads(self.key(hidden))
        v = self.split_heads(self.value(hidden))
        scores = torch.matmul(q, k.transpose(-1, -2)) / (self.head_dim ** 0.5)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = self.dropout(F.softmax(scores, dim=-1))
        context = torch.einsum("bhqk,bhkd->bhqd", probs, v)
        context = context.permute(0, 2, 1, 3).contiguous()
        return context.view(context.size(0), context.size(1), -1)


class EncoderLayer(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.attention = SelfAttention(dim, heads)
        self.attn_out = nn.Linear(dim, dim)
        self.ln1 = nn.LayerNorm(dim)
        self.intermediate = nn.Linear(dim, 2 * dim)
        self.output = nn.Linear(2 * dim, dim)
        self.ln2 = nn.LayerNorm(dim)

    def forward(self, hidden, attention_mask=None):
        hidden = self.ln1(hidden + self.attn_out(self.attention(hidden, attention_mask)))
        return self.ln2(hidden + self.output(F.gelu(self.intermediate(hidden))))


class Encoder(nn.Module):
    def __init__(self, dim, heads, depth):
        super().__init__()
        self.layer = nn.ModuleList([EncoderLayer(dim, heads) for _ in range(depth)])

    def forward(self, hidden, attention_mask=None):
        for layer in self.layer:
            hidden = layer(hidden, attention_mask)
        return hidden


class TextEncoderLike(nn.Module):
    """Input: N×L×C embeddings (inputs_embeds); positions come from a buffer."""

    def __init__(self, length=6, dim=16, heads=2, depth=2, num_classes=3):
        super().__init__()
        self.position_embeddings = nn.Embedding(32, dim)
        self.register_buffer("position_ids", torch.arange(length).unsqueeze(0))
        self.embed_norm = nn.LayerNorm(dim)
        self.encoder = Encoder(dim, heads, depth)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, inputs_embeds, attention_mask=None):
        hidden = inputs_embeds + self.position_embeddings(self.position_ids)
        hidden = self.encoder(self.embed_norm(hidden), attention_mask)
        return self.classifier(hidden[:, 0])


# ---- recurrent ---------------------------------------------------------------------------------

class LSTMClassifier(nn.Module):
    def __init__(self, features=5, hidden=8, layers=1, num_classes=3, cell=nn.LSTM):
        super().__init__()
        self.rnn = cell(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


# ---- a gated MLP with chunk (GLU) ---------------------------------------------------------------

class GatedMLP(nn.Module):
    def __init__(self, dim=16, hidden=24, num_classes=3):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        a, gate = self.fc1(self.norm(x)).chunk(2, dim=-1)
        x = x + self.fc2(a * F.silu(gate))
        return self.head(x.mean(1))


LIBRARY_MODELS: dict[str, ModelCase] = {
    "mobilenet_bnact": ModelCase(MobileNetLike, (2, 3, 16, 16)),
    "convnext": ModelCase(ConvNeXtLike, (2, 3, 16, 16)),
    "vit_fused_unbind": ModelCase(ViTLike, (2, 3, 16, 16)),
    "vit_explicit_chunk": ModelCase(functools.partial(ViTLike, fused=False, split="chunk"),
                                    (2, 3, 16, 16)),
    "mixer": ModelCase(MixerLike, (2, 3, 16, 16)),
    "resnet_getattr": ModelCase(ResNetLike, (2, 3, 16, 16)),
    "text_encoder": ModelCase(TextEncoderLike, (2, 6, 16)),
    "lstm": ModelCase(LSTMClassifier, (2, 4, 5)),
    "gru2": ModelCase(functools.partial(LSTMClassifier, layers=2, cell=nn.GRU), (2, 4, 5)),
    "gated_mlp": ModelCase(GatedMLP, (2, 6, 16)),
}

# Larger configurations for the speed benchmark (same classes).
BENCHMARK_SIZES: dict[str, tuple] = {
    "mobilenet_bnact": (functools.partial(MobileNetLike, width=32), (1, 3, 128, 128)),
    "convnext": (functools.partial(ConvNeXtLike, dims=(48, 96), depth=3), (1, 3, 128, 128)),
    "vit_fused_unbind": (functools.partial(ViTLike, img=128, patch=16, dim=96, depth=6,
                                           heads=3), (1, 3, 128, 128)),
    "vit_explicit_chunk": (functools.partial(ViTLike, img=128, patch=16, dim=96, depth=6,
                                             heads=3, fused=False, split="chunk"),
                           (1, 3, 128, 128)),
    "mixer": (functools.partial(MixerLike, img=128, patch=16, dim=96, depth=6),
              (1, 3, 128, 128)),
    "resnet_getattr": (functools.partial(ResNetLike, width=32), (1, 3, 128, 128)),
    "text_encoder": (functools.partial(TextEncoderLike, length=32, dim=96, heads=4, depth=4),
                     (1, 32, 96)),
    "lstm": (functools.partial(LSTMClassifier, features=32, hidden=128, layers=2),
             (1, 32, 32)),
    "gru2": (functools.partial(LSTMClassifier, features=32, hidden=128, layers=2,
                               cell=nn.GRU), (1, 32, 32)),
    "gated_mlp": (functools.partial(GatedMLP, dim=96, hidden=256), (1, 64, 96)),
}

__all__ = ["LIBRARY_MODELS", "BENCHMARK_SIZES"]
