"""Figures: pair overlays with colour bars and scores (``pairs``), and study figures."""
