"""Measured flaggers: precision, recall and prevalence of every rule from a labelled sample of the
audited corpus, with intervals, a held-out protocol, agreement and seed stability (docs/evaluation.md).

In small modules: ``files`` (RUN/evaluation/ and opening a run), ``settings`` (the ``evaluation:``
section), ``rules_measured`` (which rules are measured against which harm), ``design`` (the seeded
stratified sample and its weights), ``labels`` (append-only labels in labels.db), ``queue`` (the blind
labelling queue), ``intervals`` (Wilson and bootstrap intervals), ``estimates`` (weighted precision,
recall, F1, prevalence, threshold curves), ``agreement`` (Cohen's kappa), ``results`` (evaluation.json,
stability) and ``section`` (the report's section and plots).
"""

from audit.evaluation.design import DrawnSample, SampleExistsError, draw_sample, write_sample
from audit.evaluation.files import EvalRun, open_eval_run
from audit.evaluation.labels import (
    CATEGORIES,
    HARMS,
    LabelRow,
    check_categories,
    label_history,
    labels_table,
    latest_labels,
    record_label,
    record_labels,
)
from audit.evaluation.results import evaluate, write_evaluation
from audit.evaluation.settings import report_settings, resolve_settings

__all__ = [
    "CATEGORIES",
    "HARMS",
    "DrawnSample",
    "EvalRun",
    "LabelRow",
    "SampleExistsError",
    "check_categories",
    "draw_sample",
    "evaluate",
    "label_history",
    "labels_table",
    "latest_labels",
    "open_eval_run",
    "record_label",
    "record_labels",
    "report_settings",
    "resolve_settings",
    "write_evaluation",
    "write_sample",
]
