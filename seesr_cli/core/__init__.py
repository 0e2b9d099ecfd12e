"""Pure maths of the pipeline: geometry, tiling, samplers, denoising, colour fix, prompts (no files, no printing)."""
