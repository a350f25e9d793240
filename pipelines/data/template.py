"""The one chat template every model in the pipeline is trained and evaluated with.

Kept in one place so the LM corpus, SFT data, sampling and reward models agree on where a
prompt ends and a response begins.
"""

USER_PREFIX = "User: "
ASSISTANT_CUE = "\nAssistant:"


def format_prompt(prompt: str) -> str:
    """Render a user prompt up to (and including) the assistant cue."""
    return f"{USER_PREFIX}{prompt.strip()}{ASSISTANT_CUE}"


def format_example(prompt: str, response: str) -> str:
    """Render a full prompt/response exchange (no special tokens)."""
    return f"{format_prompt(prompt)} {response.strip()}"
