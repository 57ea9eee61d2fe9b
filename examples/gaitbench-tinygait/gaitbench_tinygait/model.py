"""The TinyGait network (torch is imported only when a model is built)."""

import torch
from torch import nn


class TinyGait(nn.Module):
    def __init__(self, channels=16, parts=4, embed_dim=32):
        super().__init__()
        self.parts = parts
        self.frames = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(1, channels, 3, padding=1), nn.LeakyReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(),
        )
        self.fc = nn.Parameter(torch.randn(parts, channels, embed_dim) * channels ** -0.5)

    def forward(self, sils, lengths=None):
        n, t, h, w = sils.shape
        x = self.frames(sils.reshape(n * t, 1, h, w))
        x = x.view(n, t, *x.shape[1:])
        if lengths is not None:  # padded batch: ignore frames past each sequence's end
            valid = torch.arange(t, device=sils.device)[None, :] < lengths[:, None]
            x = x.masked_fill(~valid[:, :, None, None, None], float("-inf"))
        x = x.max(1).values  # [n, c, h', w']
        strips = x.view(n, x.shape[1], self.parts, -1)
        feat = strips.mean(-1) + strips.amax(-1)  # [n, c, parts]
        emb = torch.einsum("ncp,pcd->ndp", feat, self.fc)
        return {"embeddings": emb}
