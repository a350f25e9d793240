"""What a stage process needs at run time: params, paths, the stage context, tracking, gates, atomic writes.

Every DVC stage imports this package and nothing else of `alignflow`, so dvc.yaml lists it as one
code dependency; the CLI, flows and tasks import it too.
"""
