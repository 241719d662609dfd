"""Names of image generators as they appear in metadata fields (``Software``, ``CreatorTool``, text
chunks), and the shapes of generation parameters that name no tool (A1111 ``Steps: ..`` lines,
ComfyUI graphs).

A match is a hint, never proof: anyone can write these fields. The table errs towards names that
do not occur in ordinary photo metadata (``Flux`` alone would, so it needs ``FLUX.1``).
"""

from __future__ import annotations

import json
import re

GENERATORS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.I))
    for name, pattern in (
        ("Midjourney", r"\bmid[\s-]?journey\b|\bniji[\s-]?journey\b"),
        ("DALL-E", r"\bdall[\s\-·•]?e\b"),
        ("OpenAI", r"\bopenai\b|\bgpt-?4o\b|\bchatgpt\b|\bsora\b"),
        ("Stable Diffusion", r"\bstable[\s-]?diffusion\b|\bsdxl\b|\bsd[\s-]?3(\.5)?\b"),
        ("AUTOMATIC1111", r"\bautomatic1111\b|\ba1111\b|\bsd\.next\b|\bforge\b.*\bwebui\b"),
        ("ComfyUI", r"\bcomfy\s?ui\b"),
        ("InvokeAI", r"\binvoke\s?ai\b"),
        ("NovelAI", r"\bnovel\s?ai\b"),
        ("Fooocus", r"\bfooocus\b"),
        ("Adobe Firefly", r"\bfirefly\b"),
        ("Google Imagen", r"\bimagen\s?\d?\b|\bgemini\b|\bnano\s?banana\b"),
        ("FLUX", r"\bflux\.1\b|\bflux[\s-](dev|schnell|pro)\b|\bblack forest labs\b"),
        ("Leonardo.Ai", r"\bleonardo\.?ai\b"),
        ("Ideogram", r"\bideogram\b"),
        ("Craiyon", r"\bcraiyon\b"),
        ("DreamStudio", r"\bdream\s?studio\b|\bstability\.?ai\b|\bstability ai\b"),
        (
            "Microsoft Designer",
            r"\bbing image creator\b|\bmicrosoft designer\b|\bimage creator from designer\b",
        ),
        ("Runway", r"\brunway\s?ml\b|\brunway gen-?\d\b"),
        ("Playground", r"\bplayground\s?ai\b|\bplayground v\d\b"),
        ("Krea", r"\bkrea\.?ai\b|\bkrea ai\b"),
        ("Grok", r"\bgrok\b|\bxai aurora\b"),
    )
)

# AUTOMATIC1111 (and its forks) write ``prompt\nNegative prompt: ..\nSteps: 20, Sampler: .., CFG scale: ..``.
A1111_PARAMETERS = re.compile(r"\bSteps:\s*\d+.*\b(Sampler|CFG scale|Seed):", re.S)


def name_generator(text: str) -> str:
    """The generator ``text`` names, or "" (the first of the table that matches)."""
    for name, pattern in GENERATORS:
        if pattern.search(text):
            return name
    return ""


def looks_like_a1111(text: str) -> bool:
    return bool(A1111_PARAMETERS.search(text))


def looks_like_comfyui(text: str) -> bool:
    """A ComfyUI ``prompt`` (node id -> {class_type, inputs}) or ``workflow`` ({nodes, links}) JSON."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested deep enough to exhaust the stack
        return False
    if isinstance(doc, dict) and isinstance(doc.get("nodes"), list):
        return True
    return isinstance(doc, dict) and any(isinstance(v, dict) and "class_type" in v for v in doc.values())
