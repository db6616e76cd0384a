"""personas: the persona catalog R, a versioned list of (name, definition) rows.

The version is a hash of the names and definitions, so labels bought against one catalog
are never mixed with another. LLM catalog generation (paper, Appendix B) lives here too.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

UNREPRESENTABLE = "Unrepresentable"


class CatalogError(ValueError):
    """A malformed catalog file; the message names the file and the row."""


@dataclass(frozen=True)
class Persona:
    name: str
    definition: str
    keywords: str = ""


@dataclass(frozen=True)
class Catalog:
    """An ordered persona catalog with a content hash as its version."""

    personas: tuple[Persona, ...]
    source: str = ""
    provenance: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        names = [p.name for p in self.personas]
        if not names:
            raise CatalogError(f"catalog {self.source or '<memory>'} has no personas")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise CatalogError(f"catalog {self.source or '<memory>'}: duplicate names {dupes}")
        if UNREPRESENTABLE in names:
            raise CatalogError(f"catalog {self.source}: {UNREPRESENTABLE!r} is reserved")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.personas]

    @property
    def version(self) -> str:
        """First 12 hex digits of sha256 over the (name, definition) rows, in order."""
        digest = hashlib.sha256()
        for p in self.personas:
            digest.update(f"{p.name}\x1f{p.definition}\x1e".encode())
        return digest.hexdigest()[:12]

    def __iter__(self) -> Iterator[Persona]:
        return iter(self.personas)

    def __len__(self) -> int:
        return len(self.personas)

    @classmethod
    def from_csv(cls, path: str | Path) -> Catalog:
        """Read a CSV with columns name, definition and optionally keywords."""
        file = Path(path)
        if not file.is_file():
            raise CatalogError(f"catalog file {file} does not exist")
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"name", "definition"} - set(reader.fieldnames or [])
            if missing:
                raise CatalogError(f"catalog file {file}: missing column(s) {sorted(missing)}")
            personas = []
            for row_no, row in enumerate(reader, start=2):
                name = (row["name"] or "").strip()
                if not name:
                    raise CatalogError(f"catalog file {file}: empty name in line {row_no}")
                personas.append(
                    Persona(name, (row["definition"] or "").strip(), (row.get("keywords") or ""))
                )
        return cls(tuple(personas), source=str(file))

    def to_csv(self, path: str | Path) -> None:
        with Path(path).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["name", "definition", "keywords"])
            for p in self.personas:
                writer.writerow([p.name, p.definition, p.keywords])

    def to_dataframe(self, spark: SparkSession) -> DataFrame:
        """The catalog as rows (version, name, definition) for the persona_catalog table."""
        import pandas as pd

        return spark.createDataFrame(
            pd.DataFrame(
                {
                    "version": [self.version] * len(self),
                    "name": self.names,
                    "definition": [p.definition for p in self.personas],
                }
            )
        )
