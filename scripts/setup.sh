#!/usr/bin/env bash
# One-time setup on a fresh machine: a virtualenv in .venv with the package, and the JVM jars
# (Delta Lake for Spark 4.1 / Scala 2.13) resolved by Maven into jars/lib. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch .venv/.installed
fi

if [ ! -f jars/lib/.resolved ] || [ jars/pom.xml -nt jars/lib/.resolved ]; then
  rm -rf jars/lib
  # Spark already ships Scala, Spark, Hadoop, Parquet, Jackson, log4j and compression
  # codecs; copying Delta's older copies of them would only shadow or conflict.
  (cd jars && mvn --batch-mode --quiet dependency:copy-dependencies \
      -DoutputDirectory=lib -DincludeScope=runtime \
      -DexcludeGroupIds=org.scala-lang,org.apache.spark,org.slf4j,org.apache.hadoop,org.apache.parquet,com.fasterxml.jackson.core,org.apache.logging.log4j,org.xerial.snappy,io.airlift,com.github.luben,org.roaringbitmap,commons-logging,commons-pool,org.locationtech.jts,javax.annotation,com.google.code.findbugs)
  touch jars/lib/.resolved
fi

# The report test renders the HTML page in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian chromium for the report test"
    apt-get install -y -qq chromium >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; } \
      || echo "warning: apt-get install chromium failed"
  else
    echo "note: chromium not found; the report rendering test will be skipped (outside CI)"
  fi
fi

# spark-submit and the pyspark shell read conf/spark-defaults.conf (SPARK_CONF_DIR=conf):
# list every jar by absolute path, since Spark skips globs in spark.jars.
jars=$(ls "$PWD"/jars/lib/*.jar | paste -sd, -)
sed "s#@JARS@#${jars}#" conf/spark-defaults.conf.in > conf/spark-defaults.conf
echo "setup done: $(ls jars/lib/*.jar | wc -l) jars in jars/lib, venv in .venv"
