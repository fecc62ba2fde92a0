"""ablate: ablation sweeps for RL post-training (verl GRPO), with collapse stops and reports."""

__version__ = "0.1.0"
