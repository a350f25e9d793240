"""4x convolutional subsampling and sinusoidal positions for the acoustic side.

Speech at 100 frames/s is far longer than its text; two stride-2 convolutions bring it to
25 frames/s, still long enough for target CTC without upsampling (NAST's premise).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B, T) bool, True at padded positions (the convention of ``key_padding_mask``)."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def conv_out_lengths(lengths: torch.Tensor, kernel: int, stride: int = 2, n_layers: int = 2) -> torch.Tensor:
    """Valid output frames after ``n_layers`` convolutions with 'same'-style padding kernel//2."""
    for _ in range(n_layers):
        lengths = torch.div(lengths + 2 * (kernel // 2) - kernel, stride, rounding_mode="floor") + 1
    return lengths


class Conv1dSubsampler(nn.Module):
    """Two stride-2 Conv1d + GLU over time: (B, T, n_mels) -> (B, ~T/4, d_model).

    Padded frames are zeroed before every convolution, so an utterance's valid outputs are the
    same whatever the padding of its batch (the conv's own zero padding sees the same zeros).

    Xavier-uniform weights, zero biases: PyTorch's default Conv1d init left the scaled audio
    features (std 0.66 at d_model 64) no larger than the sinusoidal positions added to them (0.71),
    and with one seed in three (speech_seed 2) neither NAST nor AR ever learned to read the audio
    (source CTC stuck at 3.6 nats per token). The same random draws rescaled to Xavier's std
    train (docs/results/speech.md).
    """

    def __init__(self, n_mels: int, channels: int, d_model: int, kernel: int = 5):
        super().__init__()
        self.kernel = kernel
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(n_mels, 2 * channels, kernel, stride=2, padding=kernel // 2),
                nn.Conv1d(channels, 2 * d_model, kernel, stride=2, padding=kernel // 2),
            ]
        )
        for conv in self.convs:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.transpose(1, 2)  # (B, C, T)
        for conv in self.convs:
            x = x.masked_fill(padding_mask(lengths, x.size(2))[:, None, :], 0.0)
            x = F.glu(conv(x), dim=1)
            lengths = conv_out_lengths(lengths, self.kernel, n_layers=1)
        return x.transpose(1, 2), lengths


class SinusoidalPositions(nn.Module):
    """Fixed sin/cos table (no parameters, so nothing to save)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(pos * freq)
        table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
        self.register_buffer("table", table, persistent=False)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        """(length, d_model) positions offset..offset+length-1."""
        if offset + length > self.table.size(0):
            raise ValueError(f"position {offset + length} beyond the table ({self.table.size(0)})")
        return self.table[offset : offset + length]
