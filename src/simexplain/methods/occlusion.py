"""Perturbation family (SPEC §2): Conditional and Pairwise Occlusion."""
