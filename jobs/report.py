"""Write the HTML report of a run (the latest one unless --run-id says which).

spark-submit jobs/report.py --config conf/online_retail.toml --run-id nightly-2026-12-03
python jobs/report.py --set report.path=output/report.html --set report.customer_id=12347
"""

from __future__ import annotations

from gplr_spark.cli import job_app
from gplr_spark.report import report_for_config

app = job_app(
    "report", report_for_config, "Write one self-contained HTML page with the run's plots."
)

if __name__ == "__main__":
    app()
