"""The ML code of alignflow: data, models, training and evaluation as plain importable functions.

Nothing in here knows about Prefect, DVC or MLflow; stage entry points in `stages/` wire it up.
"""
