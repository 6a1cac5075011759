"""Activation family (SPEC §3): Pair Grad-CAM, Interaction-CAM and Deep Similarity."""
