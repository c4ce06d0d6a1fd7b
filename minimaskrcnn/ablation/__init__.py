"""The paper's ablations (Table 2, and Table 4's keypoint comparison) in miniature, on the synthetic shapes:

    studies.py   the studies, their variants and the paper's numbers
    run.py       train every variant with every seed; write and read the stored results
    report.py    statistics over the seeds, verdicts, tables
    plots.py     the figures (notebook 08)
"""
from .plots import plot_against_paper, plot_effects, plot_gain_against_stride, plot_study
from .report import (difference, effect, finding, gain_by_stride, markdown_table, mean_std_text, overview_table,
                     paper_difference, paper_effect, short_labels, summarize, verdict)
from .run import load_results, run_one, run_study, study_train_config, variant_config, write_results
from .studies import (ABLATION_ITERS, METRICS, STRIDE_SERIES, STUDIES, TASKS, Claim, Study, Variant, get_study,
                      paper_value, select_variants)

__all__ = ["STUDIES", "STRIDE_SERIES", "METRICS", "TASKS", "Study", "Variant", "Claim", "get_study", "select_variants",
           "paper_value", "ABLATION_ITERS", "study_train_config", "variant_config", "run_one", "run_study", "write_results",
           "load_results", "summarize", "difference", "effect", "paper_difference", "paper_effect", "verdict",
           "finding", "mean_std_text", "markdown_table", "overview_table", "short_labels", "gain_by_stride",
           "plot_study", "plot_against_paper", "plot_effects", "plot_gain_against_stride"]
