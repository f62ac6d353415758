"""Throughput of local scoring with Gemma 3 270M on this CPU, in one run:

  naive      generate-then-parse: model.generate(full prompt, a few new tokens), parse the text
  forward    one forward pass per prompt, logits_to_keep=1, next-token distribution
  optimized  the backend's path: the segment's transcript prefix run once and its KV cache
             reused for every item, item suffixes batched, logits_to_keep

Segments are ~1,000-token prompts cut from TalkMoves lessons; each is rated on several items.

    python benchmarks/infer_throughput.py [--segments 4] [--items CLINSTD,EXPL,SMQR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from src.data.talkmoves import load_talkmoves, segment_lessons, talkmoves_path
from src.inference.config import ModelSpec
from src.inference.parsing import parse_rating
from src.inference.prompts import build_prompt
from src.inference.rubric import load_items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--items", default="CLINSTD,EXPL,SMQR")
    ap.add_argument("--words", type=int, default=640, help="transcript words per segment")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: cores-1)")
    ap.add_argument("--new-tokens", type=int, default=4, help="naive loop's generation budget")
    args = ap.parse_args()

    from src.inference.backends.transformers_lm import TransformersBackend
    items = load_items(args.items.split(","))
    t0 = time.perf_counter()
    be = TransformersBackend(ModelSpec("gemma", "transformers", ["base"],
                                       {"path": "gemma-3-270m", "batch_size": len(items),
                                        "threads": args.threads}),
                             items, seed=0)
    print(f"model load: {time.perf_counter() - t0:.1f} s; torch threads: {torch.get_num_threads()}")

    df = load_talkmoves(talkmoves_path())
    segs = segment_lessons(df, unit="words", size=args.words, max_segments=1,
                           max_lessons=200, max_words=args.words)
    segs = [s for s in segs if s.n_words >= args.words][:args.segments]
    tasks = []
    for s in segs:
        for it in items:
            p = build_prompt(s.text, it, "base")
            tasks.append({"item": it.id, "strategy": "base", "prompt_prefix": p.prefix,
                          "prompt_suffix": p.suffix, "prompt": p.text, "seg": s.segment + s.lesson})
    lengths = [len(be.prompt_ids(t)) for t in tasks]
    n_tok = sum(lengths)
    print(f"{len(segs)} segments x {len(items)} items = {len(tasks)} prompts, "
          f"mean prompt {n_tok / len(tasks):.0f} tokens")

    # warm-up so that one-off allocation does not count against the first method
    be.next_token_probs(tasks[:1])

    results = {}

    def report(name, seconds, extra=""):
        results[name] = seconds
        print(f"{name:>10}: {seconds:7.1f} s  {len(segs) / seconds * 60:6.2f} segments/min  "
              f"{len(tasks) / seconds * 60:6.1f} ratings/min  {n_tok / seconds:7.0f} prompt "
              f"tokens/s {extra}")

    with torch.inference_mode():
        t0 = time.perf_counter()
        parsed = 0
        for t in tasks:
            ids = torch.tensor([be.prompt_ids(t)])
            out = be.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=args.new_tokens, pad_token_id=0)
            text = be.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            it = be.items[t["item"]]
            parsed += parse_rating(text, it.scale_min, it.scale_max).score is not None
        report("naive", time.perf_counter() - t0, f"(parsed {parsed}/{len(tasks)})")

        t0 = time.perf_counter()
        for t in tasks:
            be.model(torch.tensor([be.prompt_ids(t)]), logits_to_keep=1)
        report("forward", time.perf_counter() - t0)

    t0 = time.perf_counter()
    be._prefix = (None, None, None)
    by_seg: dict[str, list] = {}
    for t in tasks:
        by_seg.setdefault(t["seg"], []).append(t)
    for group in by_seg.values():
        be.next_token_probs(group)
    report("optimized", time.perf_counter() - t0)
    print(f"speed-up of optimized over naive: {results['naive'] / results['optimized']:.1f}x")


if __name__ == "__main__":
    main()
