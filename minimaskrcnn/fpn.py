"""Feature Pyramid Network (Lin et al., 2017), the backbone of Mask R-CNN's best models (Sec. 3, "FPN").

A ResNet gives maps C2..C5 whose resolution falls and whose semantics rise with depth. FPN gives
every scale the strong semantics of the deepest one:

  1. a 1x1 "lateral" conv brings each Ck to `out_channels` channels;
  2. top-down: starting from C5, upsample the running map 2x (nearest neighbour) and add the lateral
     of the next finer level;
  3. a 3x3 "output" conv on each sum reduces the aliasing of upsampling -> Pk;
  4. P6 = P5 subsampled with stride 2 (a 1x1 max-pool, i.e. taking every other pixel), used only by
     the RPN for the largest anchors (512 pixels).

Upsampling goes to the lateral map's exact size rather than a fixed 2x, so inputs whose sides are
not multiples of 32 (odd-sized maps) work too. Weights map onto torchvision's FPN key by key:
lateral_convs.i <-> inner_blocks.i.0, output_convs.i <-> layer_blocks.i.0 (`convert.py`).

Shape glossary:
  N: images; Hk, Wk: size of level k, ceil(H / 2**k) for input height H
  Ck: (N, in_channels[k-2], Hk, Wk); Pk: (N, out_channels, Hk, Wk) for k = 2..5
  P6: (N, out_channels, ceil(H5 / 2), ceil(W5 / 2))
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """forward(OrderedDict "c2".."c5") -> OrderedDict "p2".."p6", all with `out_channels` channels.

    in_channels: channels of C2..C5 in that order, e.g. [256, 512, 1024, 2048] for ResNet-50.
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256):
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"in_channels must list the channels of C2..C5 (4 ints), got {in_channels!r}")
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1)
                                          for _ in in_channels)
        for conv in [*self.lateral_convs, *self.output_convs]:
            # the FPN paper's / torchvision's init: He-uniform with a=1 (i.e. for a linear layer), zero bias
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        self.out_channels = out_channels

    def forward(self, features: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
        c = [features[f"c{k}"] for k in (2, 3, 4, 5)]
        top = self.lateral_convs[3](c[3])  # (N, out, H5, W5)
        p = [self.output_convs[3](top)]  # P5
        for i in (2, 1, 0):  # C4, C3, C2: coarse to fine
            lateral = self.lateral_convs[i](c[i])  # (N, out, Hk, Wk)
            top = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")  # 2x up, cropped
            p.insert(0, self.output_convs[i](top))  # Pk
        p.append(F.max_pool2d(p[-1], kernel_size=1, stride=2))  # P6: (N, out, ceil(H5/2), ceil(W5/2))
        return OrderedDict((f"p{k}", x) for k, x in zip((2, 3, 4, 5, 6), p))
