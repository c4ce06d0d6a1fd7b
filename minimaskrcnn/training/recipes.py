"""Named training recipes: the demo's (`make demo`, notebook 05, and every run of the Table 2 studies), and
FINETUNE, torchvision's COCO Mask R-CNN fine-tuned to your own classes on a laptop CPU."""
from __future__ import annotations

from .. import paths
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

# Fine-tuning to your own classes, the anchors' way (torchvision's PennFudan tutorial, detectron2's balloon Colab):
# R50-FPN from torchvision's COCO weights, the class-dependent tensors afresh (transfer.py), SGD with momentum at
# lr 0.005 for 2 images (the tutorial's), a few hundred steps. Sized for a CPU: a 512-pixel shorter side instead
# of 800 (0.4x the pixels), and the whole backbone frozen (trainable_layers 0: the FPN and the heads train). On one
# thread a step took 6.4 s of CPU with 0 stages training against 8.2 s with torchvision's default 3
# (benchmarks/model.py --finetune-only), and in the transfer study (benchmarks/transfer) 0 stages reached the
# same mask AP as 3 within the seeds' spread (45.7 ± 1.6 and 46.5 ± 0.8 after 100 steps). For data far from
# COCO's photos, train more stages (--trainable-layers 3). Every COCO category of your data keeps COCO's rows.
# Its data is a placeholder, the COCO sample that ships with the package: give yours,
# dataclasses.replace(FINETUNE, data=RunData.files(json, images)), or `train --init coco --config r50_fpn
# --min-size 512 --max-size 853 --batch-size 2 --lr 0.005 --trainable-layers 0 --annotations ... --images ...`.
FINETUNE_TRAINABLE_LAYERS = 0
FINETUNE = TrainConfig(config="r50_fpn", init="coco", trainable_layers=FINETUNE_TRAINABLE_LAYERS,
                       data=RunData.coco(paths.SAMPLE_ROOT), min_size=512, max_size=853, batch_size=2, iters=300,
                       optimizer="sgd", lr=0.005, momentum=0.9, weight_decay=1e-4, warmup_iters=50,
                       warmup_factor=0.001, schedule="step", milestones=(0.75,), log_every=10, ckpt_every=100,
                       eval_every=100, seed=0)
