"""Prefect flows composed from the stage graph in dvc.yaml."""
