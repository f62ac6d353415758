"""Paths the tests share (a module of its own: `conftest` is ambiguous once subfolders have
their own conftest.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GSTUDY_SPEC = ROOT / "models" / "gstudy_teacher_lesson_rater.toml"
