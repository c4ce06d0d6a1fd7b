"""The training side, one module per concern (the model side never imports it):

    config.py      TrainConfig: the run's settings; resolve (lr and steps), resume_config, build_model_config
    datasets.py    the datasets a TrainConfig's data record (data/sources.py RunData) names
    sampler.py     the seeded, resumable order of the images and of their augmentation
    schedule.py    the optimizer and the lr as a function of the step
    runtime.py     processes (DDP), seeds and generator states, the fp16 loss scaler
    log.py         metrics.jsonl (read_records)
    loop.py        train(): the loop, from the named steps of a Run
    recipes.py     DEMO, the recipe of `make demo` and of the Table 2 studies; FINETUNE, COCO weights to your classes

    from minimaskrcnn.training import DEMO, RunData, TrainConfig, train
    result = train(TrainConfig(data=RunData.shapes(), iters=300, optimizer="adamw", lr=2e-3))
"""
from ..data.sources import RunData
from .config import TrainConfig, build_model_config, resolve, resume_config
from .datasets import build_datasets
from .log import read_records
from .loop import TrainResult, train
from .recipes import DEMO, FINETUNE
from .schedule import lr_at

__all__ = ["TrainConfig", "RunData", "TrainResult", "train", "resume_config", "resolve", "build_model_config",
           "build_datasets", "lr_at", "DEMO", "FINETUNE", "read_records"]
