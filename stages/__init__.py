"""DVC stage entry points: `python -m stages.<name>`. Each reads params, calls `pipelines`, writes one output folder."""
