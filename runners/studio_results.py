"""The Studio's evaluation result files: what its evaluation page reads from an evaluation's folder.

The Studio's "View MLflow Runs" page (`pgs/mlflow_jobs.py` in the Studio) reads, for each
`evaluation_jobs` row, two CSV files in the row's `evaluation_dir`, as the Studio's own evaluation
script writes them:

- `aggregregated_results.csv` (sic, the Studio's spelling): columns `metric,score`, one row per
  metric under MLflow's names (`exact_match/v1`, `rougeL/v1/mean`, `latency/mean`); the page joins
  the evaluations of one parent job on `metric`;
- `result_evaluation.csv`: one row per evaluated example, `model_input` and `expected_output` (the
  columns the page joins the evaluations on), then the model's `outputs` and the per-row scores.

Written by the evaluate runner (and the tests' stub runner) into `outputs.evaluation_dir`, the
folder ftctl records in the row. Stdlib only.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

AGGREGATED = "aggregregated_results.csv"
ROW_WISE = "result_evaluation.csv"
AGGREGATED_COLUMNS = ("metric", "score")
# The runner's per-row fields -> the Studio's columns (`model_input`, `expected_output` first).
ROW_COLUMNS = {"input": "model_input", "expected": "expected_output", "prediction": "outputs",
               "exact_match": "exact_match/v1/score", "rougeL": "rougeL/v1/score", "latency_s": "latency"}
# The runner's metrics -> the Studio's names (MLflow's metric keys; the Studio keeps the means and exact match).
METRIC_NAMES = {"exact_match": "exact_match/v1", "rougeL": "rougeL/v1/mean", "latency_s": "latency/mean"}


def folder_of(evaluation_dir: str, evaluation_id: str, candidates: int) -> Path:
    """Where one candidate's files go: the evaluation folder itself for a single candidate (ftctl
    runs one per job, one per Studio row), else a folder per evaluation row under it."""
    return Path(evaluation_dir) if candidates == 1 else Path(evaluation_dir) / evaluation_id


def write_results(folder: Path, rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, float]) -> dict[str, str]:
    """Write both files of one evaluation into `folder`; their paths by the Studio's file names."""
    folder.mkdir(parents=True, exist_ok=True)
    aggregated = [{"metric": METRIC_NAMES[name], "score": value} for name, value in metrics.items() if name in METRIC_NAMES]
    row_wise = [{studio: row.get(mine) for mine, studio in ROW_COLUMNS.items()} for row in rows]
    write_csv(folder / AGGREGATED, AGGREGATED_COLUMNS, aggregated)
    write_csv(folder / ROW_WISE, tuple(ROW_COLUMNS.values()), row_wise)
    return {AGGREGATED: str(folder / AGGREGATED), ROW_WISE: str(folder / ROW_WISE)}


def write_csv(path: Path, fields: tuple[str, ...], rows: Sequence[Mapping[str, Any]]) -> None:
    """`rows` as a CSV file of the columns `fields` (other keys left out), replacing `path` whole:
    a reader never sees half a file. The evaluate runner writes its own result files with it too."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
