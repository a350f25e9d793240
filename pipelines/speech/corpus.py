"""Seeded English -> German sentence pairs with known word alignment, and the speech corpus built from them.

Sentences are random clause specs (`clauses`) realised in both languages (`realise`); German order
follows clause rules, or with `reorder=False` the English order (a monotonic ablation corpus with
identical English and identical German vocabulary). `build_speech_corpus` reads them aloud with
espeak-ng voices and writes the MuST-C layout.
"""

from __future__ import annotations

import os
import random
from typing import Sequence

from pipelines.speech import mustc, tts
from pipelines.speech.clauses import make_sentence
from pipelines.speech.realise import realise

MIN_WORDS, MAX_WORDS = 4, 15


def generate_corpus(n: int, seed: int, reorder: bool = True, unique: bool = True) -> list[dict]:
    """`n` sentence pairs {en, de, align}; `align` is [[en_word_idx, de_word_idx], ...] over the
    whitespace-split texts. The same seed gives the same English for either `reorder` value.
    """
    rng = random.Random(seed)
    out, seen = [], set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise RuntimeError(f"could not generate {n} unique sentences (got {len(out)})")
        pair = realise(make_sentence(rng), reorder)
        n_en, n_de = len(pair["en"].split()), len(pair["de"].split())
        if not (MIN_WORDS <= n_en <= MAX_WORDS and MIN_WORDS <= n_de <= MAX_WORDS + 2):
            continue
        if unique and pair["en"] in seen:
            continue
        seen.add(pair["en"])
        out.append(pair)
    return out


def kendall_tau_distance(align: Sequence[Sequence[int]]) -> float:
    """Fraction of discordant pairs among alignment links (0 = monotonic, 1 = fully reversed)."""
    links = [tuple(a) for a in align]
    disc = total = 0
    for k, (i1, j1) in enumerate(links):
        for i2, j2 in links[k + 1:]:
            if i1 != i2 and j1 != j2:
                total += 1
                disc += (i1 - i2) * (j1 - j2) < 0
    return disc / total if total else 0.0


def reordering_stats(corpus: Sequence[dict]) -> dict[str, float]:
    """How much reordering the corpus demands: share of non-monotonic pairs, mean Kendall tau."""
    taus = [kendall_tau_distance(p["align"]) for p in corpus]
    return {
        "sentences": len(taus),
        "non_monotonic_fraction": sum(t > 0 for t in taus) / max(len(taus), 1),
        "kendall_tau_distance": sum(taus) / max(len(taus), 1),
    }


# ----------------------------------------------------------------------------- speech corpus

SPLITS = ("train", "dev", "tst-COMMON")


def build_speech_corpus(root: str | os.PathLike, n_train: int, n_dev: int, n_test: int, seed: int = 0,
                        reorder: bool = True, voices: Sequence[str] = tts.DEFAULT_VOICES,
                        rates: Sequence[int] = tts.DEFAULT_RATES, pitches: Sequence[int] = tts.DEFAULT_PITCHES,
                        segments_per_talk: int = 10, lang: str = "de", progress: bool = True) -> dict:
    """Generate text, synthesise it and write `<root>/en-<lang>` in the MuST-C layout.

    Splits are disjoint (sentences are unique across the whole corpus). Each talk of
    `segments_per_talk` consecutive sentences is read by one speaker (voice, rate, pitch), so a
    speaker id means what it means in MuST-C. Returns split sizes, hours and reordering stats.
    Synthesis runs in one fresh child process (reproducible audio, see `tts`); espeak-ng runs
    ~1000x real time, so 2000 sentences take about 15 s.
    """
    sizes = dict(zip(SPLITS, (n_train, n_dev, n_test)))
    pairs = generate_corpus(sum(sizes.values()), seed, reorder=reorder)
    rng = random.Random(f"speakers-{seed}")
    jobs, meta, talk_no, start = [], [], 0, 0
    for split, n in sizes.items():
        for k in range(0, n, segments_per_talk):
            talk_no += 1
            voice, rate, pitch = rng.choice(voices), rng.choice(rates), rng.choice(pitches)
            for p in pairs[start + k: start + min(k + segments_per_talk, n)]:
                jobs.append((p["en"], voice, rate, pitch))
                meta.append((split, p, f"spk.{voice}.r{rate}.p{pitch}", f"ted_{talk_no}"))
        start += n
    audio = tts.speak_batch(jobs, progress=progress)
    splits: dict[str, list[mustc.SegmentAudio]] = {s: [] for s, n in sizes.items() if n}
    for (split, p, speaker, talk), a in zip(meta, audio):
        splits[split].append(mustc.SegmentAudio(a, p["en"], p["de"], speaker, talk))
    out = mustc.write_mustc(root, splits, lang=lang)
    return {
        "path": str(out),
        "segments": {s: len(v) for s, v in splits.items()},
        "hours": {s: sum(len(x.audio) for x in v) / mustc.SAMPLE_RATE / 3600 for s, v in splits.items()},
        "talks": talk_no,
        "reorder": reorder,
        **reordering_stats(pairs),
    }
