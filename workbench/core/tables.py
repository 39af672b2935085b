"""The one reader (and writer) of tabular files: csv, tsv, json, jsonl, parquet, and .txt texts.

Study data, evaluation data and texts to predict all come through `read_table`; only blank
cells count as missing (a text that reads "NA" or "null" is a text).
"""

from __future__ import annotations

from pathlib import Path

from workbench.core.errors import DataError, caused_by, first_line

READERS = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
WRITERS = (".csv", ".tsv", ".jsonl", ".parquet")


def read_table(path: Path, what: str, *, lines_as: str | None = None):
    """`path` as a pandas DataFrame; `what` names the key or flag in errors (`data.files.train`).

    With `lines_as`, a .txt file (or any other suffix) is read one row per non-blank line
    into that column; otherwise only the suffixes in READERS are accepted.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what}: file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in READERS and lines_as is None:
        raise DataError(f"{what}: {path.name}: unsupported file type (use {', '.join(READERS)})")
    try:
        if suffix in (".csv", ".tsv"):
            tsv = suffix == ".tsv"
            # tsv as GLUE writes it: quotes are text; only blank cells are missing
            return pd.read_csv(
                path, sep="\t" if tsv else ",", quoting=3 if tsv else 0, keep_default_na=False, na_values=[""]
            )
        if suffix in (".json", ".jsonl"):
            return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return pd.DataFrame({lines_as: texts})
    except pd.errors.EmptyDataError:
        raise DataError(f"{what}: {path} has no rows: give it some") from None
    except Exception as e:  # parser, decoding and arrow errors come in many types
        if caused_by(e, UnicodeDecodeError):
            raise DataError(f"{what}: {path} is not UTF-8 text: save it as UTF-8") from None
        raise DataError(f"{what}: cannot read {path}: {first_line(e)}") from None


def write_table(frame, path: Path, what: str) -> None:
    """Write `frame` by the suffix of `path` (.csv, .tsv, .jsonl, .parquet)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix in (".csv", ".tsv"):
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    else:
        raise DataError(f"{what} {path}: use a {', '.join(WRITERS)} file name")
