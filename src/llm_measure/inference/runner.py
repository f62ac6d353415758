"""Plan a run's tasks from its config, skip those already in raw.jsonl, rate the rest."""

from __future__ import annotations

import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from llm_measure.data.talkmoves import (
    Segment,
    load_talkmoves,
    load_utterances,
    segment_lessons,
    talkmove_rate,
    talkmoves_path,
)
from llm_measure.errors import InputError
from llm_measure.inference import prompts
from llm_measure.inference.config import RunConfig
from llm_measure.inference.rubric import Item, load_items
from llm_measure.inference.runs import RunStore, now, package_versions, task_key
from llm_measure.inference.secrets import redact_url


def load_segments(cfg: RunConfig, project_root: Path) -> list[Segment]:
    tr = cfg.transcripts
    if tr.get("source", "talkmoves") == "talkmoves":
        path = Path(tr["path"]) if tr.get("path") else talkmoves_path()
        if tr.get("path") and not path.is_absolute():
            path = Path(cfg.source).parent / path
        df = load_talkmoves(path)
    else:
        path = Path(tr["path"])
        if not path.is_absolute():
            path = Path(cfg.source).parent / path
        df = load_utterances(path)
    seg = cfg.segment
    segs = segment_lessons(
        df,
        unit=seg.get("unit", "lesson"),
        size=seg.get("size", 0),
        lessons=tr.get("lessons"),
        max_lessons=tr.get("max_lessons"),
        max_segments=seg.get("max_segments_per_lesson"),
        max_words=seg.get("max_words"),
        source=cfg.source,
    )
    if not segs:
        raise InputError(
            "no segments: the transcripts or the lesson selection are empty",
            file=cfg.source,
            column="transcripts",
        )
    return segs


def retrieval_references(cfg: RunConfig, items: list[Item]) -> dict[str, list[str]]:
    """Per item, the texts retrieval may put in a prompt: examples if given, else anchors
    (also for an item the examples file has none for)."""
    anchors = {it.id: [f"Score {a.score:g}: {a.text}" for a in it.anchors] for it in items}
    if cfg.examples_file:
        path = Path(cfg.examples_file)
        if not path.exists():
            raise InputError("examples file not found", file=path)
        ex = pd.read_csv(path)
        for col in ("item", "score", "text"):
            if col not in ex.columns:
                raise InputError(f"missing column {col}", file=path, column=col)
        out = {}
        for it in items:
            mine = ex[ex["item"] == it.id]
            out[it.id] = [
                f"Example rated {s}: {t}" for s, t in zip(mine["score"], mine["text"])
            ] or anchors[it.id]
        return out
    return anchors


def plan(cfg: RunConfig, items: list[Item], segments: list[Segment]) -> list[dict]:
    """Every (model, segment, strategy, item, replicate) task, ordered so that tasks sharing
    a transcript prefix are next to each other."""
    refs: dict[tuple[str, str, str], list[str]] = {}  # filled when some model retrieves
    if any(s == "retrieval" for m in cfg.models for s in m.strategies):
        from llm_measure.inference.embeddings import Retriever, embed

        retriever = Retriever(retrieval_references(cfg, items))
        seg_vecs = embed([s.text for s in segments])
        refs = {
            (s.lesson, s.segment, it.id): retriever.top(it.id, v, cfg.retrieval_k)
            for s, v in zip(segments, seg_vecs)
            for it in items
        }
    tasks = []
    for m in cfg.models:
        for s in segments:
            for strategy in m.strategies:
                for it in items:
                    for rep in range(m.samples):
                        t = {
                            "model": m.name,
                            "strategy": strategy,
                            "teacher": s.teacher,
                            "lesson": s.lesson,
                            "segment": s.segment,
                            "item": it.id,
                            "replicate": rep,
                            "segment_text": s.text,
                        }
                        if strategy != "encoder":
                            p = prompts.build_prompt(
                                s.text,
                                it,
                                strategy,
                                refs[(s.lesson, s.segment, it.id)]
                                if strategy == "retrieval"
                                else None,
                            )
                            t["prompt_prefix"], t["prompt_suffix"] = p.prefix, p.suffix
                            t["prompt"] = p.text
                        t["key"] = task_key(t)
                        tasks.append(t)
    return tasks


def human_rows(cfg: RunConfig, items: list[Item], segments: list[Segment]) -> pd.DataFrame:
    """TalkMoves annotations as a human rater: per segment a talk-move rate, mapped onto the
    item's scale by its percentile rank among the run's segments (ties share a rank)."""
    if not cfg.human_measure:
        return pd.DataFrame()
    rater = cfg.human_measure.get("rater", "talkmoves_annotators")
    by_id = {it.id: it for it in items}
    frames = []
    for item_id, moves in cfg.human_measure["items"].items():
        it = by_id[item_id]
        rates = np.array([talkmove_rate(s, moves) for s in segments])
        rank = pd.Series(rates).rank(method="average").to_numpy()
        share = (rank - 1) / max(len(rates) - 1, 1)
        frames.append(
            pd.DataFrame(
                {
                    "teacher": [s.teacher for s in segments],
                    "lesson": [s.lesson for s in segments],
                    "segment": [s.segment for s in segments],
                    "item": item_id,
                    "rater": rater,
                    "score": it.scale_min + (it.scale_max - it.scale_min) * share,
                    "rater_kind": "human",
                    "prompt": "none",
                    "replicate": 0,
                    "scale_min": float(it.scale_min),
                    "scale_max": float(it.scale_max),
                    "talkmove_rate": rates,
                    "talkmoves": ",".join(moves),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _chunks(tasks: list[dict], backend_kind: str, size: int):
    """Work units: one segment's tasks for a local LM (prefix reuse), fixed sizes otherwise."""
    if backend_kind == "transformers":
        group: list[dict] = []
        for t in tasks:
            if group and (t["lesson"], t["segment"]) != (group[0]["lesson"], group[0]["segment"]):
                yield group
                group = []
            group.append(t)
        if group:
            yield group
    else:
        for i in range(0, len(tasks), size):
            yield tasks[i : i + size]


def _record(task: dict, res: dict, item: Item, seconds: float) -> dict:
    rating = {
        "teacher": task["teacher"],
        "lesson": task["lesson"],
        "segment": task["segment"],
        "item": task["item"],
        "rater": task["model"],
        "score": res["score"],
        "rater_kind": "model",
        "prompt": task["strategy"],
        "replicate": task["replicate"],
        "scale_min": float(item.scale_min),
        "scale_max": float(item.scale_max),
        "expected_score": res.get("expected"),
        "mode_score": res.get("mode"),
        "p_valid": res.get("p_valid"),
        "parsed_score": res.get("parsed_score"),
        "score_source": res.get("score_source"),
        "parse_status": res["parse_status"],
        "parse_reason": res.get("parse_reason", ""),
        "probs": json.dumps(res["probs"]) if res.get("probs") else None,
    }
    return {
        "key": task["key"],
        "time": now(),
        "seconds": round(seconds, 4),
        "prompt_text": task.get("prompt"),
        "request": res.get("request"),
        "output": res.get("output"),
        "n_prompt_tokens": res.get("n_prompt_tokens"),
        "retries": res.get("retries", 0),
        "rating": rating,
    }


def run(cfg: RunConfig, project_root: Path, progress: bool = True) -> dict:
    """Rate every planned task not yet in raw.jsonl; return a summary."""
    from llm_measure.inference.backends import make_backend

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    # everything that can reject the input happens before the run folder is touched
    items = load_items(cfg.items, cfg.extra_item_files, cfg.source)
    by_id = {it.id: it for it in items}
    segments = load_segments(cfg, project_root)
    tasks = plan(cfg, items, segments)
    humans = human_rows(cfg, items, segments)

    store = RunStore(cfg.run_dir, cfg.runs_root)
    manifest = {
        "run_id": cfg.run_id,
        "config_path": cfg.source,
        "config": cfg.manifest_config(),
        "seed": cfg.seed,
        "prompt_templates": prompts.template_hashes(),
        "items": {
            it.id: {
                "instrument": it.instrument,
                "name": it.name,
                "scale": [it.scale_min, it.scale_max],
                "description": it.description,
            }
            for it in items
        },
        "n_segments": len(segments),
        "n_tasks": len(tasks),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "models": {},
    }
    store.open(cfg.fingerprint(), manifest, cfg.source)
    done = store.done_keys()
    todo = [t for t in tasks if t["key"] not in done]
    failed, first_error = 0, None
    bar = tqdm(
        total=len(tasks),
        initial=len(tasks) - len(todo),
        unit="rating",
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    for spec in cfg.models:
        mine = [t for t in todo if t["model"] == spec.name]
        if not mine:
            continue
        bar.set_description(spec.name)
        backend = make_backend(spec, items, cfg.seed)
        try:
            ident = backend.identity()
            ident["params"] = {
                k: (redact_url(v) if k == "base_url" and isinstance(v, str) else v)
                for k, v in spec.params.items()
            }
            m = store.manifest()["models"]
            m[spec.name] = ident
            store.update_manifest(models=m)
            size = int(spec.params.get("concurrency", 4)) * 4 if spec.backend == "openai" else 64
            kind = "fixed" if spec.params.get("scoring") == "batched" else spec.backend
            for chunk in _chunks(mine, kind, size):
                t0 = time.perf_counter()
                results = backend.run(chunk)
                per = (time.perf_counter() - t0) / len(chunk)
                records = []
                for t, r in zip(chunk, results):
                    if r.get("failed"):
                        failed += 1
                        first_error = first_error or r["failed"]
                        records.append(
                            {
                                "event": "error",
                                "task_key": t["key"],
                                "time": now(),
                                "error": r["failed"],
                                "request": r.get("request"),
                            }
                        )
                    else:
                        records.append(_record(t, r, by_id[t["item"]], per))
                store.append(records)
                bar.update(sum(1 for r in results if not r.get("failed")))
            fallback = getattr(backend, "structured_fallback", None)  # OpenAI-style servers
            if fallback:
                m = store.manifest()["models"]
                m[spec.name]["structured_fallback"] = fallback
                store.update_manifest(models=m)
        finally:
            # also on SIGINT/SIGTERM: stop the backend's workers before leaving
            if hasattr(backend, "close"):
                backend.close()
    bar.close()
    recs = store.records()
    if not store.exists:  # not one rating: no run folder (the next run starts afresh)
        return {
            "tasks": len(tasks),
            "done": 0,
            "failed_this_run": failed,
            "skipped_already_done": 0,
            "broken_lines_ignored": 0,
            "rows": 0,
            "missing_scores": 0,
            "first_error": first_error,
            "run_dir_written": False,
        }
    # nothing rated yet (every request failed): no table to write, the next run retries
    ratings = store.write_ratings(humans) if recs else pd.DataFrame(columns=["score", "rater_kind"])
    summary = {
        "tasks": len(tasks),
        "done": len(recs),
        "failed_this_run": failed,
        "skipped_already_done": len(tasks) - len(todo),
        "broken_lines_ignored": store.broken_lines,
        "rows": len(ratings),
        "missing_scores": int(ratings.loc[ratings["rater_kind"] == "model", "score"].isna().sum()),
        "first_error": first_error,
    }
    store.update_manifest(finished_at=now(), summary=summary)
    return summary
