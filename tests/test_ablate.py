"""The ablation studies: every variant builds and trains, summaries and verdicts are computed right,
and the stored results in benchmarks/ablations agree with the runs they list."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minimaskrcnn import ablate, engine
from minimaskrcnn.data import ShapesDataset, collate
from minimaskrcnn.model import MaskRCNN

STORED = Path(__file__).resolve().parents[1] / "benchmarks" / "ablations"


def test_every_variant_sets_its_fields_and_trains_a_step():
    cfg = ablate.study_train_config()
    images, targets = collate([ShapesDataset(2, image_size=64, seed=3)[i] for i in range(2)])
    for study in ablate.STUDIES.values():
        for variant in study.variants:
            mc = ablate.variant_config(study, variant, 4, cfg)
            for key, value in {**study.common, **variant.overrides}.items():
                assert getattr(mc.roi_heads, key) == value
            torch.manual_seed(0)
            mc = dataclasses.replace(mc, transform=dataclasses.replace(mc.transform, min_size=64, max_size=64))
            model = MaskRCNN(mc).train()
            losses = model(images, targets).losses
            assert set(losses) == {"loss_objectness", "loss_rpn_box", "loss_classifier", "loss_box", "loss_mask"}
            assert all(torch.isfinite(v) for v in losses.values()), (study.name, variant.name)


def test_pool_levels_fix_the_stride():
    cfg = ablate.study_train_config()
    for name, stride in (("roi_layer", 16), ("large_stride", 32)):
        study = ablate.STUDIES[name]
        model = MaskRCNN(ablate.variant_config(study, study.variants[0], 4, cfg))
        assert list(model.roi_heads.strides.values()) == [stride]


def test_unknown_study_and_field_are_named():
    with pytest.raises(ValueError, match="nonexistent"):
        ablate.get_study("nonexistent")
    study = dataclasses.replace(ablate.STUDIES["aligned"], common={"no_such_field": 1})
    with pytest.raises(ValueError, match="no_such_field"):
        ablate.variant_config(study, study.variants[0], 4, ablate.study_train_config())


def fake_runs(study, values):
    """values[variant] = list of mask AP per seed; other metrics derived from it."""
    runs = []
    for name, aps in values.items():
        for seed, ap in enumerate(aps):
            m = {"AP": ap, "AP50": min(1.0, ap + 0.2), "AP75": ap - 0.05}
            runs.append({"variant": name, "seed": seed, "mask": m, "box": dict(m)})
    return runs


def test_summary_matches_numpy():
    study = ablate.STUDIES["large_stride"]
    values = {"roipool": [0.41, 0.45, 0.40], "roialign": [0.62, 0.60, 0.66]}
    rows = {r["variant"]: r for r in ablate.summarize(study, fake_runs(study, values))}
    for name, aps in values.items():
        assert rows[name]["mask_AP"]["mean"] == pytest.approx(np.mean(aps))
        assert rows[name]["mask_AP"]["std"] == pytest.approx(np.std(aps, ddof=1))
        assert rows[name]["n"] == 3
    assert rows["roipool"]["mask_AP75"]["paper"] == 21.6 and rows["roialign"]["box_AP"]["paper"] == 34.0


@pytest.mark.parametrize("values, verdict", [
    ({"roialign": [0.60, 0.61, 0.62], "roipool": [0.40, 0.41, 0.42]}, "reproduced"),
    ({"roialign": [0.50, 0.60, 0.40], "roipool": [0.45, 0.55, 0.48]}, "not shown"),
    ({"roialign": [0.30, 0.31, 0.32], "roipool": [0.40, 0.41, 0.42]}, "reversed"),
])
def test_finding_weighs_the_difference_against_the_spread(values, verdict):
    study = ablate.STUDIES["large_stride"]
    text = ablate.finding(study, ablate.summarize(study, fake_runs(study, values)))
    assert verdict in text


def test_close_claim():
    study = ablate.STUDIES["agnostic"]
    close = ablate.finding(study, ablate.summarize(study, fake_runs(study, {"specific": [0.5], "agnostic": [0.49]})))
    far = ablate.finding(study, ablate.summarize(study, fake_runs(study, {"specific": [0.5], "agnostic": [0.4]})))
    assert close.endswith("reproduced.") and "not reproduced" in far


def test_a_tiny_study_runs_and_writes_its_table(tmp_path):
    small = {"num_images": 4, "num_val_images": 2, "image_size": 64, "min_size": 64, "max_size": 64, "batch_size": 2, "warmup_iters": 1,
             "log_every": 1}
    results = ablate.run_study("agnostic", seeds=(0,), iters=1, out=str(tmp_path / "runs"),
                               command="test", overrides=small)
    assert [r["variant"] for r in results["runs"]] == ["specific", "agnostic"]
    for r in results["runs"]:
        assert 0.0 <= r["mask"]["AP"] <= 1.0 and 0.0 <= r["box"]["AP"] <= 1.0
    paths = ablate.write_results(results, tmp_path / "results")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    md = paths[1].read_text()
    assert "class-agnostic" in md and "29.7" in md and "Command: `test`" in md
    assert ablate.load_results(tmp_path / "results")["agnostic"]["runs"] == results["runs"]


@pytest.mark.parametrize("path", sorted(STORED.glob("*.json")), ids=lambda p: p.stem)
def test_stored_results_agree_with_their_runs(path):
    data = json.loads(path.read_text())
    study = ablate.get_study(data["study"])
    assert data["command"].startswith("python -m minimaskrcnn ablate")
    assert len(data["seeds"]) >= 3
    assert {(r["variant"], r["seed"]) for r in data["runs"]} == {
        (v.name, s) for v in study.variants for s in data["seeds"]}
    assert data["summary"] == ablate.summarize(study, data["runs"])
    assert data["finding"] == ablate.finding(study, data["summary"])
    assert path.with_suffix(".md").read_text() == ablate.markdown_table(data)
