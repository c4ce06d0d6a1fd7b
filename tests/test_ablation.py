"""The ablation studies: every variant builds and trains, summaries and verdicts are computed right,
and the stored results in benchmarks/ablations agree with the runs they list."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minimaskrcnn import ablation
from minimaskrcnn.data import ShapesDataset, collate
from minimaskrcnn.model import MaskRCNN
from minimaskrcnn.training import RunData

STORED = Path(__file__).resolve().parents[1] / "benchmarks" / "ablations"


def test_every_variant_sets_its_fields_and_trains_a_step():
    for study in ablation.STUDIES.values():
        cfg = dataclasses.replace(ablation.study_train_config(), **study.train)  # the keypoint study's preset, data
        keypoints = study.name == "keypoint_mask"
        assert cfg.data.train.keypoints == keypoints and cfg.config.endswith("_keypoints") == keypoints
        images, targets = collate([ShapesDataset(2, image_size=64, seed=3, keypoints=keypoints)[i] for i in range(2)])
        for variant in study.variants:
            mc = ablation.variant_config(study, variant, 4, cfg, num_keypoints=11 * keypoints)
            for key, value in {**study.common, **variant.overrides}.items():
                assert getattr(mc.roi_heads, key) == value
            torch.manual_seed(0)
            mc = dataclasses.replace(mc, transform=dataclasses.replace(mc.transform, min_size=64, max_size=64))
            model = MaskRCNN(mc).train()
            losses = model(images, targets).losses
            heads = ["loss_mask"] * mc.roi_heads.mask_branch + ["loss_keypoint"] * bool(mc.roi_heads.num_keypoints)
            assert set(losses) == {"loss_objectness", "loss_rpn_box", "loss_classifier", "loss_box", *heads}
            assert all(torch.isfinite(v) for v in losses.values()), (study.name, variant.name)
    # the keypoint study: keypoints alone, then with the mask branch; the others all have the mask branch
    kp = ablation.STUDIES["keypoint_mask"]
    assert [ablation.variant_config(kp, v, 4, dataclasses.replace(ablation.study_train_config(), **kp.train), 11)
            .roi_heads.mask_branch for v in kp.variants] == [False, True]


def test_pool_levels_fix_the_stride():
    cfg = ablation.study_train_config()
    for stride, name, pool, align in ablation.STRIDE_SERIES:
        study = ablation.STUDIES[name]
        for variant in (v for v in study.variants if v.name in (pool, align)):
            model = MaskRCNN(ablation.variant_config(study, variant, 4, cfg))
            assert list(model.roi_heads.strides.values()) == [stride], (name, variant.name)
            assert model.config.roi_heads.pooler == ("pool" if variant.name == pool else "align")


def test_unknown_study_and_field_are_named():
    with pytest.raises(ValueError, match="nonexistent"):
        ablation.get_study("nonexistent")
    study = dataclasses.replace(ablation.STUDIES["aligned"], common={"no_such_field": 1})
    with pytest.raises(ValueError, match="no_such_field"):
        ablation.variant_config(study, study.variants[0], 4, ablation.study_train_config())


def fake_runs(study, values):
    """values[variant] = list of mask AP per seed; other metrics derived from it."""
    runs = []
    for name, aps in values.items():
        for seed, ap in enumerate(aps):
            m = {"AP": ap, "AP50": min(1.0, ap + 0.2), "AP75": ap - 0.05}
            runs.append({"variant": name, "seed": seed, "mask": m, "box": dict(m)})
    return runs


def test_summary_matches_numpy():
    study = ablation.STUDIES["large_stride"]
    values = {"roipool": [0.41, 0.45, 0.40], "roialign": [0.62, 0.60, 0.66]}
    rows = {r["variant"]: r for r in ablation.summarize(study, fake_runs(study, values))}
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
    study = ablation.STUDIES["large_stride"]
    text = ablation.finding(study, ablation.summarize(study, fake_runs(study, values)))
    assert verdict in text


def test_close_claim():
    study = ablation.STUDIES["agnostic"]
    close = ablation.finding(study, ablation.summarize(study, fake_runs(study, {"specific": [0.5], "agnostic": [0.49]})))
    far = ablation.finding(study, ablation.summarize(study, fake_runs(study, {"specific": [0.5], "agnostic": [0.4]})))
    assert close.endswith("reproduced.") and "not reproduced" in far


def test_a_tiny_study_runs_and_writes_its_table(tmp_path):
    small = {"data": RunData.shapes(4, 2, image_size=64), "min_size": 64, "max_size": 64, "batch_size": 2,
             "warmup_iters": 1, "log_every": 1}
    results = ablation.run_study("agnostic", seeds=(0,), iters=1, out=str(tmp_path / "runs"),
                               command="test", overrides=small)
    assert [r["variant"] for r in results["runs"]] == ["specific", "agnostic"]
    for r in results["runs"]:
        assert 0.0 <= r["mask"]["AP"] <= 1.0 and 0.0 <= r["box"]["AP"] <= 1.0
    paths = ablation.write_results(results, tmp_path / "results")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    md = paths[1].read_text()
    assert "class-agnostic" in md and "29.7" in md and "Command: `test`" in md and "on 2 held-out" in md
    assert ablation.load_results(tmp_path / "results")["agnostic"]["runs"] == results["runs"]


def test_a_tiny_keypoint_study_scores_keypoints_and_sets_them_beside_the_papers(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    small = {"data": RunData.shapes(4, 2, image_size=64, keypoints=True), "min_size": 64, "max_size": 64,
             "batch_size": 2, "warmup_iters": 1, "log_every": 1}
    results = ablation.run_study("keypoint_mask", seeds=(0,), iters=2, out=str(tmp_path / "runs"),
                               command="test", overrides=small)
    assert results["train_config"]["config"] == "cpu_small_keypoints"
    only, both = results["runs"]
    assert (only["variant"], both["variant"]) == ("keypoints", "keypoints_mask")
    for run in (only, both):
        assert 0.0 <= run["keypoints"]["AP"] <= 1.0 and 0.0 <= run["box"]["AP"] <= 1.0
    assert only["mask"]["AP"] is None and 0.0 <= both["mask"]["AP"] <= 1.0  # no mask branch, no mask AP
    row = results["summary"][0]
    assert row["keypoints_AP"]["mean"] == only["keypoints"]["AP"] and row["keypoints_AP"]["paper"] == 62.7
    assert row["mask_AP"]["mean"] is None
    md = ablation.markdown_table(results)
    assert ("| variant | keypoint AP | AP50 | AP75 | box AP | AP50 | AP75 | mask AP | AP50 | AP75 | paper keypoint AP "
            "| AP50 | AP75 |") in md
    assert "| keypoint-only | " in md and md.count("| - | - | - |") == 1 and "| 63.1 | 87.3 | 68.7 |" in md
    assert "keypoint & mask minus keypoint-only" in results["finding"] and "no verdict" in results["finding"]
    fig = ablation.plot_study(results)  # the keypoint APs, not the mask's
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == pytest.approx(sorted(100 * r["keypoints"][m] for r in (only, both) for m in ablation.METRICS))
    plt.close(fig)
    fig = ablation.plot_against_paper({"keypoint_mask": results}, "mask_AP75", cols=1)  # its keypoint AP75
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == pytest.approx(sorted([100 * only["keypoints"]["AP75"], 100 * both["keypoints"]["AP75"],
                                            68.4, 68.7]))
    assert fig.axes[0].get_ylabel() == "keypoints AP75 x 100"
    plt.close(fig)


@pytest.mark.parametrize("path", sorted(STORED.glob("*.json")), ids=lambda p: p.stem)
def test_stored_results_agree_with_their_runs(path):
    data = json.loads(path.read_text())
    study = ablation.get_study(data["study"])
    assert data["command"].startswith("python -m minimaskrcnn ablate")
    assert len(data["seeds"]) >= 3
    assert {(r["variant"], r["seed"]) for r in data["runs"]} == {
        (v.name, s) for v in study.variants for s in data["seeds"]}
    assert data["summary"] == ablation.summarize(study, data["runs"])
    assert data["finding"] == ablation.finding(study, data["summary"], data["train_config"]["iters"])
    assert path.with_suffix(".md").read_text() == ablation.markdown_table(data)


def test_effect_by_hand_and_the_papers_differences():
    study = ablation.STUDIES["large_stride"]
    values = {"roialign": [0.62, 0.60, 0.66], "roipool": [0.41, 0.45, 0.40]}
    diff, two_se = ablation.effect(study, ablation.summarize(study, fake_runs(study, values)))
    # AP75 = AP - 0.05 in fake_runs, so the AP75 difference is the AP difference
    assert diff == pytest.approx(100 * (np.mean(values["roialign"]) - np.mean(values["roipool"])))
    se = np.sqrt(sum(np.var(v, ddof=1) / 3 for v in values.values()))
    assert two_se == pytest.approx(200 * se)
    # Table 2: 2c mask AP75 31.5 - 26.4, 2d 32.1 - 21.6, 2b mask AP 30.3 - 24.8, Sec. 4.2 30.3 - 29.7, 2e 33.6 - 31.5
    # and Table 4, keypoint AP 63.1 (keypoint & mask) - 62.7 (keypoint-only)
    expected = {"roi_layer": 5.1, "large_stride": 10.5, "mask_loss": 5.5, "agnostic": 0.6, "mask_head": 2.1,
                "aligned": None, "strides": None, "keypoint_mask": 0.4}
    assert {name: ablation.paper_effect(s) for name, s in ablation.STUDIES.items()} == pytest.approx(expected)


def test_plots_against_the_paper_draw_ours_and_the_papers_values():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {}
    for name, values in (("large_stride", {"roipool": [0.41, 0.45, 0.40], "roialign": [0.62, 0.60, 0.66]}),
                         ("aligned", {"unaligned": [0.5, 0.52, 0.51], "aligned": [0.53, 0.5, 0.52]})):
        study = ablation.STUDIES[name]
        runs = fake_runs(study, values)
        results[name] = {"study": name, "title": study.title, "runs": runs, "summary": ablation.summarize(study, runs)}
    fig = ablation.plot_against_paper(results, "mask_AP75", cols=2)
    heights = [sorted(round(p.get_height(), 6) for p in ax.patches) for ax in fig.axes[:2]]
    # large_stride: our means 37.0 and 57.67, the paper's 21.6 and 32.1; aligned: ours only (not in the paper)
    ours = [100 * np.mean(aps) - 5 for aps in ([0.41, 0.45, 0.40], [0.62, 0.60, 0.66])]  # AP75 = AP - 0.05
    assert heights[0] == pytest.approx(sorted(ours + [21.6, 32.1]))
    assert len(heights[1]) == 2
    plt.close(fig)
    fig = ablation.plot_effects(results)
    bars = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    study = ablation.STUDIES["aligned"]
    ours_aligned = ablation.effect(study, results["aligned"]["summary"])[0]
    ours_stride = ablation.effect(ablation.STUDIES["large_stride"], results["large_stride"]["summary"])[0]
    assert bars == pytest.approx(sorted([ours_stride, 10.5, ours_aligned]))
    plt.close(fig)


def test_overview_table_lists_every_study_with_its_verdict():
    results = {}
    for name, values in (("large_stride", {"roipool": [0.41, 0.45, 0.40], "roialign": [0.62, 0.60, 0.66]}),
                         ("agnostic", {"specific": [0.5, 0.52, 0.51], "agnostic": [0.40, 0.41, 0.42]})):
        study = ablation.STUDIES[name]
        runs = fake_runs(study, values)
        results[name] = {"study": name, "summary": ablation.summarize(study, runs), "wall_seconds": 600.0}
    lines = ablation.overview_table(results).splitlines()
    assert len(lines) == 4
    # large_stride: +20.7 AP75 (the AP difference), the paper's +10.5, reproduced; agnostic: +10 AP, not close
    assert lines[2].startswith("| large_stride | RoIAlign - RoIPool, mask AP75 | +10.5 | +20.7 ± ")
    assert lines[2].endswith("| reproduced | 10 min |")
    assert lines[3].startswith("| agnostic | class-specific - class-agnostic, mask AP | +0.6 | +10.0 ± ")
    assert "| not reproduced |" in lines[3]


def test_every_study_is_stored_and_the_readme_shows_their_overview():
    stored = ablation.load_results(STORED)
    assert list(stored) == list(ablation.STUDIES)
    readme = (STORED.parents[1] / "README.md").read_text()
    assert ablation.overview_table(stored) in readme
    for name in stored:
        assert f"benchmarks/ablations/{name}.md" in readme


def test_short_labels_drop_the_parenthesis_unless_two_would_collide():
    assert ablation.short_labels(ablation.STUDIES["roi_layer"]) == {
        "roipool": "RoIPool", "roiwarp": "RoIWarp", "roialign_max": "RoIAlign (max)", "roialign_avg": "RoIAlign (avg)"}
    assert ablation.short_labels(ablation.STUDIES["mask_loss"]) == {"softmax": "softmax", "sigmoid": "sigmoid"}


def test_gain_by_stride_collects_roipool_and_roialign_from_three_studies():
    values = {"strides": {"roipool_s4": [0.60, 0.62, 0.61], "roialign_s4": [0.64, 0.66, 0.65],
                          "roipool_s8": [0.50, 0.52, 0.51], "roialign_s8": [0.60, 0.63, 0.66]},
              "roi_layer": {"roipool": [0.30, 0.33, 0.36], "roiwarp": [0.3] * 3, "roialign_max": [0.6] * 3,
                            "roialign_avg": [0.70, 0.70, 0.73]}}
    results = {}
    for name, v in values.items():
        study = ablation.STUDIES[name]
        results[name] = {"summary": ablation.summarize(study, fake_runs(study, v))}
    rows = ablation.gain_by_stride(results, "mask_AP")  # large_stride is missing: stride 32 is left out
    assert [r["stride"] for r in rows] == [4, 8, 16]
    pairs = [("roipool_s4", "roialign_s4", "strides"), ("roipool_s8", "roialign_s8", "strides"),
             ("roipool", "roialign_avg", "roi_layer")]
    for row, (pool, align, name) in zip(rows, pairs):
        a, b = values[name][align], values[name][pool]
        assert row["gain"] == pytest.approx(100 * (np.mean(a) - np.mean(b)))
        assert row["two_se"] == pytest.approx(200 * np.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 3))
        assert row["roialign"]["mean"] == pytest.approx(np.mean(a))
    assert [r["paper_gain"] for r in rows] == [None, None, pytest.approx(30.3 - 26.9)]  # Table 2c, mask AP
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = ablation.plot_gain_against_stride(results, object_size=40.0, paper_object_size=90.0, metric="mask_AP")
    ours = fig.axes[1].lines[0]  # the errorbar's line
    (paper,) = [line for line in fig.axes[1].lines if line.get_marker() == "s"]  # the paper's squares
    np.testing.assert_allclose(np.asarray(ours.get_ydata(), dtype=float), [r["gain"] for r in rows])
    # x is the median object in feature cells: ours 40 px at strides 4, 8, 16; the paper's 90 px at stride 16
    np.testing.assert_allclose(np.asarray(ours.get_xdata(), dtype=float), [10.0, 5.0, 2.5])
    np.testing.assert_allclose(np.asarray(paper.get_xdata(), dtype=float), [90.0 / 16])
    np.testing.assert_allclose(np.asarray(paper.get_ydata(), dtype=float), [30.3 - 26.9])
    pool, align = [c.lines[0] for c in fig.axes[0].containers]  # the errorbars' lines: RoIPool's, RoIAlign's
    for line, key in ((pool, "roipool"), (align, "roialign")):
        np.testing.assert_allclose(np.asarray(line.get_xdata(), dtype=float), [10.0, 5.0, 2.5])
        np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), [100 * r[key]["mean"] for r in rows])
    assert fig.axes[0].get_xscale() == "log" and "feature cells" in fig.axes[1].get_xlabel()
    labels = [t.get_text() for t in fig.axes[1].texts]
    assert labels.count("stride 16") == 2 and "stride 4" in labels  # ours and the paper's at stride 16
    plt.close(fig)


def test_a_study_can_train_some_of_its_variants(tmp_path):
    small = {"data": RunData.shapes(4, 2, image_size=64), "min_size": 64, "max_size": 64, "batch_size": 2,
             "log_every": 1}
    results = ablation.run_study("roi_layer", seeds=(0,), iters=1, out=str(tmp_path), overrides=small,
                               variants=["roialign_avg", "roipool"])
    assert [r["variant"] for r in results["runs"]] == ["roipool", "roialign_avg"]  # the study's order
    assert [r["variant"] for r in results["summary"]] == ["roipool", "roialign_avg"]
    assert results["finding"].startswith("RoIAlign (avg) minus RoIPool")
    assert results["finding"].endswith("mask AP75 (no verdict: 1-step runs, short of a study's 900).")
    with pytest.raises(ValueError, match="roialign_mean"):
        ablation.select_variants(ablation.STUDIES["roi_layer"], ["roialign_mean"])
    study = ablation.select_variants(ablation.STUDIES["roi_layer"], ["roiwarp"])
    assert ablation.verdict(study, ablation.summarize(study, fake_runs(study, {"roiwarp": [0.5]}))) == "not measured"


def test_ablate_writes_only_under_its_out_and_judges_no_run_that_did_not_train(tmp_path, monkeypatch, capsys):
    """A 2-step study once overwrote a stored one and called two untrained models "reproduced"."""
    from minimaskrcnn import cli
    from minimaskrcnn.ablation import run as ablation_run

    stored_before = {p.name: p.read_bytes() for p in STORED.iterdir()}
    tiny = dict(data=RunData.shapes(4, 2, image_size=64), min_size=64, max_size=64, batch_size=2, log_every=1)
    shrink = ablation_run.study_train_config
    monkeypatch.setattr(ablation_run, "study_train_config",
                        lambda iters=None: dataclasses.replace(shrink(iters), **tiny))
    out = tmp_path / "study"
    assert cli.main(["ablate", "agnostic", "--seeds", "0", "1", "--iters", "2", "--out", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in STORED.iterdir()} == stored_before
    assert sorted(p.name for p in out.iterdir()) == ["agnostic.json", "agnostic.md", "agnostic.png", "runs"]
    assert (out / "runs" / "agnostic" / "agnostic" / "seed1" / "last.pt").is_file()
    results = ablation.load_results(out)["agnostic"]
    assert results["finding"].endswith("no verdict: 2-step runs, short of a study's 900.")
    assert "no verdict: 2-step runs" in ablation.overview_table({"agnostic": results})
    assert "reproduced" not in (out / "agnostic.md").read_text()


@pytest.mark.parametrize("flags, says", [
    (["--jobs", "0"], "--jobs must be an integer >= 1; got 0"),
    (["--jobs", "-1"], "--jobs must be an integer >= 1; got -1"),
    (["--seeds", "0", "0"], "--seeds repeats 0: each seed is one run; give distinct seeds"),
    (["--seeds", "1", "-2"], "--seeds must be an integer >= 0; got -2"),
    (["--iters", "0"], "--iters must be an integer >= 1; got 0"),  # it ran the 900-step default
    (["--out", ""], "--out is empty"),
    (["--device", "tpu"], "--device must be 'auto', 'cpu', 'cuda'"),
])
def test_ablate_flags_that_make_no_sense_are_refused_in_one_line_before_any_run(flags, says, monkeypatch, capsys):
    """--seeds 0 0 reported a spread of zero over "2 seeds" that were one run, both writing one folder."""
    from minimaskrcnn import cli
    from minimaskrcnn.cli import ablate

    monkeypatch.setattr(ablate, "run_study", lambda *a, **k: pytest.fail("a study ran"))
    assert cli.main(["ablate", "agnostic", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {says}") and err.count("\n") == 1, err
