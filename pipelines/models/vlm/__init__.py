"""The vision-language model (an HF LLaVA) and the token layout of its (image, prompt, response) samples.

Model code the visual branch (`pipelines/visual`) and the visual reward model
(`pipelines/models/reward/visual.py`) both build on, so neither imports the other's package.
"""
