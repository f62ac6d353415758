"""Throughput of local next-token scoring (Gemma 3 270M, base prompts), methods compared
in the same run, each repeated and reported as the median:

  prefix-1     today's default (scoring = "prefix", batch_size = 1): a segment's transcript
               prefix run once, its KV cache reused for each item's suffix, one at a time
  prefix-B     the same with the items of a segment batched (batch_size = number of items)
  batched-B    scoring = "batched": whole prompts of several segments, left-padded,
               batch_size = --batch prompts per forward pass
  naive        (with --naive) model.generate a few tokens per prompt and parse the text

Prints segments/min and ratings/min per method and each one's speed-up over prefix-1.
The same script runs on a GPU (--device cuda; dtype auto = bfloat16 there).

    python benchmarks/infer_throughput.py [--segments 6] [--words 200] [--batch 8] \
        [--repeats 3] [--device cpu|cuda|auto] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from llm_measure.data.talkmoves import load_talkmoves, segment_lessons, talkmoves_path
from llm_measure.inference.config import ModelSpec
from llm_measure.inference.parsing import parse_rating
from llm_measure.inference.prompts import build_prompt
from llm_measure.inference.rubric import load_items


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--segments", type=int, default=6)
    ap.add_argument("--items", default="CLINSTD,EXPL,SMQR")
    ap.add_argument("--words", type=int, default=200, help="transcript words per segment")
    ap.add_argument("--batch", type=int, default=8, help="prompts per pass for batched-B")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: cores-1)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--naive", action="store_true", help="also time generate-then-parse")
    args = ap.parse_args()

    from llm_measure.inference.backends.transformers_lm import TransformersBackend

    items = load_items(args.items.split(","))
    t0 = time.perf_counter()
    params = {
        "path": "gemma-3-270m",
        "threads": args.threads,
        "device": args.device,
        "dtype": args.dtype,
    }
    be = TransformersBackend(ModelSpec("gemma", "transformers", ["base"], params), items, seed=0)
    print(
        f"model load: {time.perf_counter() - t0:.1f} s; device {be.device}, dtype {be.dtype}, "
        f"torch threads {torch.get_num_threads()}"
    )

    df = load_talkmoves(talkmoves_path())
    segs = segment_lessons(
        df, unit="words", size=args.words, max_segments=1, max_lessons=200, max_words=args.words
    )
    segs = [s for s in segs if s.n_words >= args.words][: args.segments]
    tasks = []
    for s in segs:
        for it in items:
            p = build_prompt(s.text, it, "base")
            tasks.append(
                {
                    "item": it.id,
                    "strategy": "base",
                    "prompt_prefix": p.prefix,
                    "prompt_suffix": p.suffix,
                    "prompt": p.text,
                    "key": f"{s.lesson}|{it.id}",
                }
            )
    n_tok = sum(len(be.prompt_ids(t)) for t in tasks)
    print(
        f"{len(segs)} segments x {len(items)} items = {len(tasks)} prompts, "
        f"mean prompt {n_tok / len(tasks):.0f} tokens; {args.repeats} repeats, medians"
    )

    def prefix(batch):
        def go():
            be._prefix = (None, None, None)
            be.scoring, be.batch_size = "prefix", batch
            return be.run(tasks)

        return go

    def batched():
        be.scoring, be.batch_size = "batched", args.batch
        return be.run(tasks)

    def naive():
        with torch.inference_mode():
            for t in tasks:
                ids = torch.tensor([be.prompt_ids(t)], device=be.device)
                out = be.model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    max_new_tokens=4,
                    pad_token_id=0,
                )
                it = be.items[t["item"]]
                parse_rating(
                    be.tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True),
                    it.scale_min,
                    it.scale_max,
                )

    methods = {
        "prefix-1": prefix(1),
        f"prefix-{len(items)}": prefix(len(items)),
        f"batched-{args.batch}": batched,
    }
    if args.naive:
        methods["naive"] = naive
    prefix(1)()  # warm-up: one-off allocations count against nobody
    times = {name: [] for name in methods}
    scores = {}
    for _ in range(args.repeats):  # interleaved, so load changes hit every method alike
        for name, fn in methods.items():
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            if out is not None:
                scores[name] = [r["expected"] for r in out]
    ref = statistics.median(times["prefix-1"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"{name:>12}: median {med:6.2f} s  {len(segs) / med * 60:7.1f} segments/min  "
            f"{len(tasks) / med * 60:7.1f} ratings/min  x{ref / med:4.2f} vs prefix-1  "
            f"(runs: {', '.join(f'{t:.2f}' for t in ts)})"
        )
    diff = max(abs(a - b) for a, b in zip(scores["prefix-1"], scores[f"batched-{args.batch}"]))
    print(f"largest |expected score difference| batched vs prefix-1: {diff:.2e}")


if __name__ == "__main__":
    main()
