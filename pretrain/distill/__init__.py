"""Knowledge distillation in pretraining: a student learns from a larger teacher's tokens.

- `config.DistillConfig`: the `distill:` recipe section (teacher or cache, alpha, temperature).
- `teacher`: load a frozen teacher (HF Llama directory or one of our runs) and check that its
  vocabulary is the data's.
- `cache` / `cache_format` / `cache_reader`: `slm distill cache` writes the teacher's top-K
  log-probabilities for every training token; training reads them per sample.
- The losses live with the other LM-head kernels: `model.kernels.distill`.
"""
