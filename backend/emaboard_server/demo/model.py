"""The demo's model: a small CNN with BatchNorm for 1×8×8 digit images."""

from __future__ import annotations

from torch import Tensor, nn

from emaboard_server.demo.data import NUM_CLASSES


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DigitsCNN(nn.Module):
    """Three 3×3 conv blocks (conv, BatchNorm, ReLU), a 2×2 max-pool, a linear head.

    Input (B, 1, 8, 8) float32 in [0, 1]; output (B, 10) logits. About 17k parameters.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(1, width),  # (B, w, 8, 8)
            _conv_block(width, 2 * width),  # (B, 2w, 8, 8)
            nn.MaxPool2d(2),  # (B, 2w, 4, 4)
            _conv_block(2 * width, 2 * width),  # (B, 2w, 4, 4)
        )
        self.head = nn.Linear(2 * width * 4 * 4, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))  # type: ignore[no-any-return]
