"""Small models that take what people bring beyond images (issue 17): audio features, token ids.

Importable as ``sequence_models:<callable>`` when tests/ is on sys.path (the CLI tests put it
there), so the same models go through the CLI and the Python API.
"""

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 50
SEQ = 16


class KeywordSpotter(nn.Module):
    """A Conv1d keyword-spotting net on N×40×T MFCC frames (Google Speech Commands style)."""

    def __init__(self, mfcc: int = 40, classes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv1d(mfcc, 16, 5, stride=2)
        self.bn1 = nn.BatchNorm1d(16)
        self.conv2 = nn.Conv1d(16, 16, 3, padding=1, groups=16)
        self.conv3 = nn.Conv1d(16, 24, 1)
        self.bn3 = nn.BatchNorm1d(24)
        self.fc = nn.Linear(24, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn3(self.conv3(self.conv2(x))))
        return self.fc(x.mean(dim=2))


class LSTMClassifier(nn.Module):
    """Token ids (N×T int64) -> embedding -> LSTM -> the last step's hidden state -> classes."""

    def __init__(self, vocab: int = VOCAB, dim: int = 12, hidden: int = 16, classes: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, ids):
        out, _ = self.lstm(self.embed(ids))
        return self.fc(out[:, -1])


class QKVAttention(nn.Module):
    """The frame of multi-head self-attention from one qkv Linear (also tests/construct_models.py's
    attention constructs): q, k, v split into heads, and the heads merged into `proj`."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, x):
        """q, k, v (stacked on the first dimension) of N×L×C tokens, each N×heads×L×C/heads."""
        n, t, c = x.shape
        return self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)

    def merge_heads(self, out, shape):
        """N×heads×L×C/heads attention output -> `proj` of the N×L×C tokens."""
        return self.proj(out.transpose(1, 2).reshape(shape))


class _Attention(QKVAttention):
    def forward(self, x, mask):
        q, k, v = self.split_heads(x)
        return self.merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), x.shape)


class PostNormLayer(nn.Module):
    """A BERT layer: x = norm1(x + attn(x, mask)); norm2(x + fc2(gelu(fc1(x)))), fc1 2× wide
    (also tests/construct_models.py's BertLike, with its own attention)."""

    def __init__(self, attn: nn.Module, dim: int):
        super().__init__()
        self.attn = attn
        self.norm1 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x, mask):
        x = self.norm1(x + self.attn(x, mask))
        return self.norm2(x + self.fc2(F.gelu(self.fc1(x))))


class TinyBert(nn.Module):
    """BERT-like: token ids (N×T int64) and an attention mask (N×T bool, True = attend);
    token + position embeddings, two post-norm layers, a classifier on the first token."""

    def __init__(self, vocab: int = VOCAB, seq: int = SEQ, dim: int = 16, heads: int = 2,
                 classes: int = 3):
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Parameter(torch.zeros(1, seq, dim))
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList([PostNormLayer(_Attention(dim, heads), dim)
                                     for _ in range(2)])
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask=None):
        x = self.norm(self.tokens(input_ids) + self.positions)
        mask = None if attention_mask is None else attention_mask[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        return self.head(x[:, 0])


def keyword_spotter():
    torch.manual_seed(0)
    return KeywordSpotter()


def lstm_classifier():
    torch.manual_seed(0)
    return LSTMClassifier()


def tiny_bert():
    torch.manual_seed(0)
    return TinyBert()
