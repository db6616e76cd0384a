"""Evaluate personas three ways and write reports/*.md with plots.

python jobs/evaluate.py                                  # everything (about half an hour)
python jobs/evaluate.py --parts inference --seeds 0      # one part, quicker
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gplr_spark.cli import DEFAULT_CONFIG

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _csv(text: str, kind: type) -> tuple:
    return tuple(kind(x) for x in text.split(",") if x.strip())


@app.command()
def main(
    config: Annotated[Path, typer.Option(help="TOML config (input, cleaning)")] = DEFAULT_CONFIG,
    parts: Annotated[str, typer.Option(help="inference,segmentation,recommender")] = (
        "inference,segmentation,recommender"
    ),
    rates: Annotated[str, typer.Option(help="prototype rates")] = "0.01,0.02,0.05,0.1,0.2",
    seeds: Annotated[str, typer.Option(help="inference seeds")] = "0,1,2",
    rec_seeds: Annotated[str, typer.Option(help="recommender seeds")] = "0,1,2",
    rec_protocols: Annotated[str, typer.Option(help="A (paper), B (clean)")] = "A,B",
    rec_variants: Annotated[str, typer.Option(help="bipartite,recorded,gplr5,gplr20")] = (
        "bipartite,recorded,gplr5,gplr20"
    ),
    epochs: Annotated[int, typer.Option(help="recommender epochs")] = 150,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 0.01,
    batch: Annotated[int, typer.Option(help="BPR batch size")] = 8192,
    reg: Annotated[
        float, typer.Option(help="L2 on ego embeddings (1e-3: tuned, reports/recommender.md)")
    ] = 1e-3,
    out: Annotated[Path, typer.Option(help="report directory")] = Path("reports"),
) -> None:
    from gplr_spark.config import load_config
    from gplr_spark.evaluation.recommender import TrainConfig
    from gplr_spark.evaluation.run import EvalOptions, run_all

    cfg = load_config(config)
    opts = EvalOptions(
        parts=_csv(parts, str),
        rates=_csv(rates, float),
        seeds=_csv(seeds, int),
        rec_seeds=_csv(rec_seeds, int),
        rec_protocols=_csv(rec_protocols, str),
        rec_variants=_csv(rec_variants, str),
        rec=TrainConfig(epochs=epochs, lr=lr, batch=batch, reg=reg),
        out=out,
    )
    spark = None
    if {"inference", "segmentation"} & set(opts.parts):
        from gplr_spark.session import get_spark

        spark = get_spark("gplr-evaluate", conf={"spark.sql.shuffle.partitions": "4"})
    run_all(spark, cfg, opts)
    typer.echo(f"reports written to {out}/")


if __name__ == "__main__":
    app()
