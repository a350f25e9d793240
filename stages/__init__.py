"""DVC stage entry points: `python -m stages.<name>`. Each reads params, calls `pipelines`, writes one output folder.

Under `alignflow run` a stage command first hands itself to the run's warm server, which has torch and
the other libraries imported already, and runs there in a fork (`alignflow/warm_start.py`); without one
it carries on here, cold.
"""
from alignflow.warm_start import hand_off

hand_off()
