"""Scaling-law experiments: plan sweeps over the model ladder, run and collect them, and fit
Chinchilla's approaches 2 and 3, Gadre et al.'s over-training law and Sardana et al.'s
inference-aware optimum, and McCandlish et al.'s critical batch from batch-size sweeps
(`slm sweep plan|run|collect|fit`, pretrain/commands/sweep.py)."""
