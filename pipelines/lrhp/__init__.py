"""LRHP experiments on pair vectors (pipelines/models/preference): the representation map and its
kind structure, preference data selection, and preference margin prediction (docs/lrhp.md)."""
