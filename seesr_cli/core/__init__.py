"""Pure maths of the pipeline: geometry, tiling, samplers, denoising, colour fix, prompts (no files, no printing)."""

# Every note of a fallback (out of memory, a reduced-precision rerun) starts with this, so the
# CLI can say that such an output may differ from an unconstrained run.
FALLBACK_NOTE = "fallback: "
