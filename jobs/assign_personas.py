"""Assign personas to every customer: the full GPLR run as a job.

spark-submit jobs/assign_personas.py --config conf/online_retail.toml [--set key=value]
python jobs/assign_personas.py --config conf/online_retail.toml --run-id nightly-2026-12-03
"""

from __future__ import annotations

from gplr_spark.cli import job_app
from gplr_spark.pipeline import run_gplr

app = job_app("assign_personas", run_gplr, "Run GPLR end to end and write the Delta tables.")

if __name__ == "__main__":
    app()
