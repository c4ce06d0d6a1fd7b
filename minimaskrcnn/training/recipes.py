"""Named training recipes: the demo's (`make demo`, notebook 05, and every run of the Table 2 studies)."""
from __future__ import annotations

from ..data.sources import RunData
from .config import TrainConfig

# The demo's recipe, chosen on the held-out shapes (the README's "What make demo does" gives the figures): AdamW,
# which trains a from-scratch network with BatchNorm far faster than the paper's SGD (a fine-tuning recipe), a
# short warmup and a cosine decay to 0; 900 steps of 4 images of 128x128 (1.8 passes over 2000 images, flipped at
# random), where AP has nearly stopped growing (600 steps reach clearly less, 1100 little more). Smaller images
# (96x96) lost AP; a cheaper head needed more steps for about the same AP.
DEMO = TrainConfig(config="cpu_small", data=RunData.shapes(num_images=2000, num_val_images=200, image_size=128),
                   batch_size=4, iters=900, optimizer="adamw", lr=2e-3, weight_decay=1e-4, warmup_iters=100,
                   warmup_factor=0.01, schedule="cosine", log_every=20, ckpt_every=250, seed=0)
