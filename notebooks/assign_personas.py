# Databricks notebook source
# MAGIC %md
# MAGIC # Assign personas (production run)
# MAGIC The full GPLR run with every main parameter as a widget. Empty widgets keep the config
# MAGIC file's value; set ones override it exactly like `--set section.key=value` on the job.
# MAGIC Rerunning with the same `run_id` replaces that run's rows in all five tables.

# COMMAND ----------

# Outside a wheel install, import the package from this repository (notebooks/..).
import os
import sys

if os.path.isdir(os.path.join("..", "gplr_spark")):
    sys.path.insert(0, os.path.abspath(".."))

# COMMAND ----------

import json

from gplr_spark import notebook
from gplr_spark.pipeline import run_gplr
from gplr_spark.report import report_for_config
from gplr_spark.session import get_spark

spark = get_spark("gplr-assign-personas")
dbutils = notebook.get_dbutils(globals(), spark)

# COMMAND ----------

dbutils.widgets.text("config", "conf/online_retail.toml", "Config file")
dbutils.widgets.text("input_source", "", "Input path or table")
dbutils.widgets.text("output_path", "", "Delta folder")
dbutils.widgets.text("output_catalog", "", "Unity Catalog catalog")
dbutils.widgets.text("output_schema", "", "Schema (set: tables are registered by name)")
dbutils.widgets.text("run_id", "", "Run id (empty: a timestamp)")
dbutils.widgets.dropdown("labeler", "auto", ["auto", "offline", "recorded", "openai"], "Labeler")
dbutils.widgets.text("sample_rate", "", "Prototype share")
dbutils.widgets.text("eps", "", "RevAff eps (0 = exact)")
dbutils.widgets.text("walk_length", "", "Walk length l")
dbutils.widgets.text("beta", "", "De-bias beta")
dbutils.widgets.text("assign_method", "", "Assignment: calibrated or top_k (empty: config)")
dbutils.widgets.text("k", "", "Personas per customer (assign.method top_k)")
dbutils.widgets.text("evidence_top_n", "", "Evidence items per persona")
dbutils.widgets.text("report_path", "", "HTML report file (empty: config)")
dbutils.widgets.dropdown("write_report", "false", ["true", "false"], "Write the HTML report")

# COMMAND ----------

cfg = notebook.config_from_widgets(dbutils)
print(cfg.to_json())

# COMMAND ----------

result = run_gplr(spark, cfg)
print(result.summary())
if dbutils.widgets.get("write_report") == "true":
    print(report_for_config(spark, cfg).summary())

# COMMAND ----------

dbutils.notebook.exit(
    json.dumps({"run_id": result.run_id, "counts": result.counts, "tables": result.tables})
)
