"""Prefect tasks: thin wrappers that reproduce one DVC stage each."""
