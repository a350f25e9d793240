"""The GRAM judge prompt: how (question, response A, response B) becomes token ids.

Token ids are the concatenation of separately encoded segments (template markers, prompt,
responses). This keeps truncation exact and the cue intact; segments split at spaces and
newlines, where byte-level BPE pre-tokenisation splits anyway, so for our tokenizer the ids
equal those of encoding ``render_judge(...)`` as one string.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.models.reward.truncation import allocate, keep_left

TEMPLATE_VERSION = "gram-judge-v1"
HEADER = "User question:"
MARK_A = "\n[Response A]\n"
MARK_B = "\n[Response B]\n"
CUE = "\n#Preferred:"
CANDIDATES = (" A", " B")


def render_judge(prompt: str, response_a: str, response_b: str) -> str:
    """Human-readable judge input, ending in the cue after which the model says A or B."""
    return (
        f"{HEADER} {(prompt or '').strip()}{MARK_A}{(response_a or '').strip()}"
        f"{MARK_B}{(response_b or '').strip()}{CUE}"
    )


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (empty text: no ids)."""
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


@dataclass(frozen=True)
class JudgeTokens:
    """Fixed token ids of the template for one tokenizer.

    ``cue`` ends with any shared prefix of the encodings of " A" and " B" (e.g. a lone
    space token when " A" is not one token), so the next token is exactly the candidate.
    """

    bos: list
    eos: list
    header: list
    mark_a: list
    mark_b: list
    cue: list
    id_a: int
    id_b: int

    @property
    def candidate_ids(self) -> tuple[int, int]:
        return self.id_a, self.id_b


def candidate_token_ids(tokenizer) -> tuple[list[int], int, int]:
    """(shared prefix, id of A, id of B) from the last tokens of " A" and " B".

    Works for byte-level BPE and other HF tokenizers; raises ValueError if the two
    candidates cannot be told apart by one token.
    """
    ea, eb = encode(tokenizer, CANDIDATES[0]), encode(tokenizer, CANDIDATES[1])
    if not ea or not eb:
        raise ValueError(f"tokenizer encodes {CANDIDATES} to empty ids: {ea}, {eb}")
    if ea[-1] == eb[-1]:
        raise ValueError(f"candidates {CANDIDATES} end in the same token id {ea[-1]}; cannot judge")
    prefix = ea[:-1] if ea[:-1] == eb[:-1] else []
    return prefix, ea[-1], eb[-1]


def judge_tokens(tokenizer) -> JudgeTokens:
    """Build the template's fixed ids for ``tokenizer`` (bos/eos only if it has them)."""
    prefix, id_a, id_b = candidate_token_ids(tokenizer)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return JudgeTokens(
        bos=bos,
        eos=eos,
        header=encode(tokenizer, HEADER),
        mark_a=encode(tokenizer, MARK_A),
        mark_b=encode(tokenizer, MARK_B),
        cue=encode(tokenizer, CUE) + prefix,
        id_a=id_a,
        id_b=id_b,
    )


def _content(tokenizer, prompt: str, a: str, b: str) -> tuple[list, list, list]:
    p = encode(tokenizer, " " + (prompt or "").strip())
    return p, encode(tokenizer, (a or "").strip()), encode(tokenizer, (b or "").strip())


def judge_ids(tokenizer, jt: JudgeTokens, prompt: str, a: str, b: str, max_length: int) -> list[int]:
    """``bos header prompt [A] a [B] b cue`` truncated to ``max_length`` (cue always kept)."""
    p, ta, tb = _content(tokenizer, prompt, a, b)
    fixed = jt.bos + jt.header + jt.mark_a + jt.mark_b + jt.cue
    n_p, (n_a, n_b) = allocate(len(p), [len(ta), len(tb)], max_length - len(fixed))
    return jt.bos + jt.header + keep_left(p, n_p) + jt.mark_a + ta[:n_a] + jt.mark_b + tb[:n_b] + jt.cue


def pair_lm_ids(
    tokenizer, jt: JudgeTokens, prompt: str, a: str, b: str, max_length: int
) -> tuple[list[int], list[bool]]:
    """Stage-1 layout ``bos header prompt [A] a [B] b eos`` (judge template, no cue).

    Returns ids and a target mask: response tokens and the final eos are targets; bos,
    template markers and the prompt are context only.
    """
    p, ta, tb = _content(tokenizer, prompt, a, b)
    fixed = jt.bos + jt.header + jt.mark_a + jt.mark_b + jt.eos
    n_p, (n_a, n_b) = allocate(len(p), [len(ta), len(tb)], max_length - len(fixed))
    parts = [
        (jt.bos + jt.header + keep_left(p, n_p) + jt.mark_a, False),
        (ta[:n_a], True),
        (jt.mark_b, False),
        (tb[:n_b] + jt.eos, True),
    ]
    ids, mask = [], []
    for seg, target in parts:
        ids.extend(seg)
        mask.extend([target] * len(seg))
    return ids, mask


def min_judge_length(jt: JudgeTokens) -> int:
    """Smallest max_length that holds the template with empty prompt and responses."""
    return len(jt.bos + jt.header + jt.mark_a + jt.mark_b + jt.cue)
