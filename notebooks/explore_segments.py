# Databricks notebook source
# MAGIC %md
# MAGIC # Explore segments
# MAGIC For marketing analysts: the persona segments of a run, the evidence behind one
# MAGIC customer's personas ("why is this customer a Gardening Lover?") and the run's report.

# COMMAND ----------

# Outside a wheel install, import the package from this repository (notebooks/..).
import os
import sys

if os.path.isdir(os.path.join("..", "gplr_spark")):
    sys.path.insert(0, os.path.abspath(".."))

# COMMAND ----------

from pyspark.sql import functions as F

from gplr_spark import notebook
from gplr_spark.report import build_report, load_run, pick_customer
from gplr_spark.session import get_spark

spark = get_spark("gplr-explore-segments")
dbutils = notebook.get_dbutils(globals(), spark)

# COMMAND ----------

dbutils.widgets.text("config", "conf/online_retail.toml", "Config file")
dbutils.widgets.text("output_path", "", "Delta folder (empty: config)")
dbutils.widgets.text("output_catalog", "", "Unity Catalog catalog")
dbutils.widgets.text("output_schema", "", "Schema of the tables")
dbutils.widgets.text("run_id", "", "Run id (empty: the latest)")
dbutils.widgets.text("customer_id", "", "Customer to explain (empty: a busy one)")

# COMMAND ----------

cfg = notebook.config_from_widgets(dbutils)
out = cfg.output
tables = load_run(spark, cfg.output_base(), out.run_id, catalog=out.catalog, schema=out.schema_)
print(f"run {tables.run_id}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Segments: size, reach and revenue per persona

# COMMAND ----------

segments = tables["persona_segments"].orderBy(F.desc("revenue"))
notebook.show(segments, globals())

# COMMAND ----------

# MAGIC %md
# MAGIC ## One customer: personas and the items that carried them

# COMMAND ----------

customer = cfg.report.customer_id or pick_customer(tables)
personas = tables["customer_personas"].where(F.col("customer_id") == customer).orderBy("rank")
evidence = (
    tables["persona_evidence"]
    .where(F.col("customer_id") == customer)
    .orderBy("persona", F.desc("contribution"))
)
notebook.show(personas, globals())
notebook.show(evidence, globals())

# COMMAND ----------

report = build_report(tables, customer_id=customer)
notebook.display_html(report.html, globals())
