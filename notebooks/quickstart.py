# Databricks notebook source
# MAGIC %md
# MAGIC # GPLR quickstart
# MAGIC Assign personas to every customer of the bundled OnlineRetail data (or your own input),
# MAGIC write the five Delta tables and draw the report. All logic lives in the `gplr_spark`
# MAGIC package: this notebook only sets widgets and calls it.
# MAGIC
# MAGIC On Databricks: open it from a Git folder of this repository (the repo root is then on
# MAGIC `sys.path`) or attach the `gplr_spark` wheel to the cluster. Set `output_path` to a
# MAGIC Unity Catalog volume, e.g. `/Volumes/main/marketing/gplr`.

# COMMAND ----------

# Outside a wheel install, import the package from this repository (notebooks/..).
import os
import sys

if os.path.isdir(os.path.join("..", "gplr_spark")):
    sys.path.insert(0, os.path.abspath(".."))

# COMMAND ----------

from gplr_spark import notebook
from gplr_spark.pipeline import run_gplr
from gplr_spark.report import report_for_config
from gplr_spark.session import get_spark

spark = get_spark("gplr-quickstart")
dbutils = notebook.get_dbutils(globals(), spark)

# COMMAND ----------

dbutils.widgets.text("config", "conf/online_retail.toml", "Config file")
dbutils.widgets.text("input_source", "", "Input path or table (empty: config)")
dbutils.widgets.text("output_path", "", "Delta folder (empty: config)")
dbutils.widgets.text("run_id", "quickstart", "Run id (a rerun replaces it)")
dbutils.widgets.dropdown("labeler", "offline", ["auto", "offline", "recorded", "openai"], "Labeler")
dbutils.widgets.text("sample_rate", "0.05", "Share of customers the labeler sees")
dbutils.widgets.text("report_path", "", "HTML report file (empty: config)")

# COMMAND ----------

cfg = notebook.config_from_widgets(dbutils)
result = run_gplr(spark, cfg)
print(result.summary())

# COMMAND ----------

# MAGIC %md
# MAGIC ## Segments and a look at the personas

# COMMAND ----------

notebook.show(result.segments.orderBy("customers", ascending=False), globals())
notebook.show(result.assignments.orderBy("customer_id", "rank"), globals())

# COMMAND ----------

# MAGIC %md
# MAGIC ## The report (also written to `report.path`)

# COMMAND ----------

report = report_for_config(spark, cfg)
print(report.summary())
notebook.display_html(report.html, globals())
