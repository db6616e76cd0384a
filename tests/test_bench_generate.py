"""The benchmark's synthetic graph generator and scipy oracle (numpy/pyarrow, no Spark);
one slow test runs the whole benchmark on the smoke size."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench import generate as gen
from bench.oracle import compare, exact_affinity, topk_agreement

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = dataclasses.replace(
    gen.SIZES["smoke"], name="tiny", customers=1_000, items=400, edges=20_000, chunk_edges=6_000
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gen.generate(TINY, tmp_path_factory.mktemp("graphs"))


def read(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    edges = pq.read_table(folder / "edges.parquet")
    labels = pq.read_table(folder / "labels.parquet")
    return (
        edges.column("customer_id").to_numpy(),
        edges.column("item_id").to_numpy(),
        labels.column("customer_id").to_numpy(),
        labels.column("persona").to_numpy(zero_copy_only=False),
    )


def test_schema_and_ids(tiny: Path) -> None:
    edges = pq.read_schema(tiny / "edges.parquet")
    labels = pq.read_schema(tiny / "labels.parquet")
    assert [(f.name, str(f.type)) for f in edges] == [
        ("customer_id", "int64"),
        ("item_id", "int64"),
    ]
    assert [(f.name, str(f.type)) for f in labels] == [
        ("customer_id", "int64"),
        ("persona", "string"),
    ]
    cust, item, _, persona = read(tiny)
    assert cust.min() >= 0 and cust.max() < TINY.customers
    assert item.min() >= 0 and item.max() < TINY.items
    assert set(persona) <= set(gen.persona_names(TINY.personas))


def test_deterministic_by_seed(tiny: Path, tmp_path: Path) -> None:
    again = gen.generate(TINY, tmp_path / "a")
    for name in ("edges.parquet", "labels.parquet"):
        assert pq.read_table(again / name).equals(pq.read_table(tiny / name))
    other = gen.generate(dataclasses.replace(TINY, seed=TINY.seed + 1), tmp_path / "b")
    assert not pq.read_table(other / "edges.parquet").equals(pq.read_table(tiny / "edges.parquet"))


def test_skips_current_files(tiny: Path) -> None:
    before = (tiny / "edges.parquet").stat().st_mtime_ns
    gen.generate(TINY, tiny.parent)
    assert (tiny / "edges.parquet").stat().st_mtime_ns == before


def test_unique_pairs_and_counts(tiny: Path) -> None:
    cust, item, _, _ = read(tiny)
    keys = cust * TINY.items + item
    assert len(np.unique(keys)) == len(keys)
    assert np.all(np.diff(cust) >= 0)  # sorted by customer
    assert abs(len(keys) - TINY.edges) <= 0.02 * TINY.edges
    assert len(np.unique(cust)) == TINY.customers  # every customer buys >= 1 item
    assert len(np.unique(item)) >= 0.9 * TINY.items
    meta = json.loads((tiny / "meta.json").read_text())
    assert meta["edges"] == len(keys) and meta["spec"] == TINY.as_dict()


def test_power_law_skew(tiny: Path) -> None:
    cust, item, _, _ = read(tiny)
    item_deg = np.sort(np.bincount(item, minlength=TINY.items))[::-1]
    top = max(1, int(0.01 * TINY.items))
    assert item_deg[:top].sum() / item_deg.sum() > 0.08  # 1% of items: > 8x their share
    assert item_deg[0] > 20 * np.median(item_deg)
    cust_deg = np.bincount(cust)
    assert cust_deg.max() > 4 * np.median(cust_deg)  # heavy-tailed baskets


def test_prototypes_and_labels(tiny: Path) -> None:
    _, _, lab_c, lab_p = read(tiny)
    protos, per = np.unique(lab_c, return_counts=True)
    assert len(protos) == round(TINY.prototype_share * TINY.customers)
    assert per.min() >= 1 and per.max() <= 8
    pairs = {(int(c), str(p)) for c, p in zip(lab_c, lab_p, strict=True)}
    assert len(pairs) == len(lab_c)  # distinct personas per prototype
    names, counts = np.unique(lab_p, return_counts=True)
    assert counts.max() > 5 * np.median(counts)  # skewed persona popularity
    assert "persona_00" in names


def test_sizes_scale_instacart() -> None:
    full, small, big = (gen.SIZES[s] for s in ("instacart-full", "instacart-0.1x", "instacart-10x"))
    assert (full.customers, full.items, full.edges, full.personas) == (
        206_209,
        49_677,
        13_300_000,
        51,
    )
    assert small.edges == 1_330_000 and big.edges == 133_000_000
    assert small.personas == big.personas == 51


def test_oracle_hand_example() -> None:
    # u0-i0, u1-i0, u1-i1, u2-i1; u0 labelled A and B (equal counts: c = 1).
    exact = exact_affinity(
        np.array([0, 1, 1, 2]),
        np.array([0, 0, 1, 1]),
        np.array([0, 0]),
        np.array(["A", "B"], dtype=object),
    )
    np.testing.assert_allclose(exact.psi, [[0.25, 0.25], [0.125, 0.125], [0.0, 0.0]])
    errors = compare(exact, exact.psi + 1e-3 * (exact.psi > 0))
    assert errors["max_abs_error"] == pytest.approx(1e-3)


def test_topk_agreement_ties() -> None:
    exact = np.array([[3.0, 2.0, 2.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    approx = np.array([[3.0, 1.0, 2.0, 0.5], [1.0, 0.0, 0.0, 0.0]])
    got = topk_agreement(exact, approx, k=2)
    assert got["tie_aware"] == 1.0  # {0, 2} is an exact top-2 set (2.0 tie)
    assert got["strict"] == 0.5  # strict ties break to {0, 1}


@pytest.mark.slow
def test_bench_smoke_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    cmd = [
        sys.executable,
        "-m",
        "bench.affinity_bench",
        "--sizes=smoke",
        "--eps=0,1e-3",
        "--no-online-retail",
        f"--graphs-dir={tmp_path / 'graphs'}",
        f"--results-dir={tmp_path / 'results'}",
    ]
    subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True, timeout=600)
    doc = json.loads((tmp_path / "results" / "latest.json").read_text())
    runs = {r["eps"]: r for r in doc["runs"]}
    assert set(runs) == {0.0, 1e-3} and not any("error" in r for r in doc["runs"])
    assert runs[0.0]["errors"]["max_abs_error"] < 1e-12
    assert runs[0.0]["errors"]["top5_tie_aware"] == 1.0
    assert runs[1e-3]["errors"]["max_abs_error"] <= 1e-3
    assert "| smoke |" in (tmp_path / "results" / "latest.md").read_text()
