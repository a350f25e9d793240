"""Seeded English -> German sentence pairs with known word alignment.

Every German word is created from the English words it translates, so the alignment is exact
and free. German order is produced by clause rules (verb-second main clauses, verb-final
subordinate clauses, participles/infinitives/separable prefixes in the right bracket,
extraposed subordinate clauses); `reorder=False` instead sorts the very same German words by
their English position, giving a monotonic ablation corpus with identical English and
identical German vocabulary.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Sequence

from pipelines.speech import grammar as g
from pipelines.speech import mustc, tts

MIN_WORDS, MAX_WORDS = 4, 15


@dataclass
class Word:
    text: str
    links: tuple[int, ...]  # ids of the English words this word comes from (EN: its own id)
    clause: int  # 0 main clause, 1 subordinate clause: decides where commas go


class _Words:
    """Creates English words with fresh ids and German words linked to them."""

    def __init__(self) -> None:
        self.next_id = 0

    def en(self, text: str, clause: int) -> Word:
        self.next_id += 1
        return Word(text, (self.next_id,), clause)

    def de(self, text: str, clause: int, *sources: Word) -> Word:
        links = tuple(sorted({i for w in sources for i in w.links}))
        return Word(text, links, clause)


# ----------------------------------------------------------------------------- clause specs


@dataclass
class NP:
    noun: g.Noun | None
    det: str  # def | dem | indef | poss | num | bare | pron | it
    word: str = ""  # possessive, number or pronoun (English)
    adj: g.Adj | None = None
    plural: bool = False

    @property
    def person(self) -> str:
        if self.det == "pron":
            return next(p for en, _, p in g.PRONOUNS if en == self.word)
        return "3pl" if self.plural else "3sg"


@dataclass
class Clause:
    verb: g.Verb | None  # None: copula clause with `pred`
    tense: str  # present | past | perfect | can | must | will
    subj: NP
    acc: NP | None = None
    dat: NP | None = None
    pred: g.Adj | None = None
    adjunct: tuple = ()  # (kind, en_prep, de_prep, case, NP) or ("manner", en, de)
    adverb: str = ""  # English time or frequency adverb
    front_adverb: bool = False
    neg: bool = False
    comp: tuple[str, str] = ("", "")  # complementizer (en, de) when subordinate
    sub: "Clause | None" = None
    sub_front: bool = False


SUBORDINATORS = {  # English -> (German, allowed tenses); "when" becomes "als" in the past
    "because": ("weil", None),
    "although": ("obwohl", None),
    "when": ("wenn", {"present", "past"}),
    "if": ("wenn", {"present"}),
    "while": ("während", {"present", "past"}),
    "before": ("bevor", {"present", "past"}),
}
TENSES = ["present", "past", "perfect", "can", "must", "will"]
PAST = {"past", "perfect"}


def _pick_noun(rng: random.Random, tags: str) -> g.Noun:
    return rng.choice([n for n in g.NOUNS if set(n.tags) & set(tags)])


def _make_np(rng: random.Random, tags: str, definite_only: bool = False, singular: bool = False) -> NP:
    noun = _pick_noun(rng, tags)
    adjs = [a for a in g.ADJECTIVES if set(a.tags) & set(noun.tags)]
    adj = rng.choice(adjs) if adjs and rng.random() < 0.3 else None
    kinds = ["def", "dem", "poss"]  # negated clauses: "nicht" after a definite object
    if not definite_only:
        kinds += ["def", "def", "indef", "num", "bare"]
    det = rng.choice(kinds)
    plural = det in ("num", "bare") or (det != "indef" and rng.random() < 0.25)
    if singular and plural:
        det, plural = rng.choice(["def", "poss", "indef"]), False
    word = ""
    if det == "poss":
        word = rng.choice(list(g.POSSESSIVES))
    elif det == "num":
        word = rng.choice(list(g.NUMBERS))
    return NP(noun, det, word, adj, plural)


def _make_subject(rng: random.Random, tags: str) -> NP:
    if "H" in tags and rng.random() < 0.25:
        return NP(None, "pron", rng.choice(g.PRONOUNS)[0])
    return _make_np(rng, tags)


def _make_clause(rng: random.Random, tense: str | None = None, simple: bool = False,
                 verbs: Sequence[g.Verb] | None = None) -> Clause:
    """One clause; `simple` (subordinate clauses) means fewer adjuncts and no fronting.
    Without an explicit `verbs` list, 12% of clauses are copula clauses ("the dog is hungry")."""
    copula = verbs is None and rng.random() < 0.12
    verb = None if copula else rng.choice(verbs or [v for v in g.VERBS if v.frame != "that"])
    tense = tense or rng.choice(TENSES)
    if verb is None and tense in ("perfect", "can", "must"):
        tense = "past" if tense == "perfect" else "will"
    neg = rng.random() < 0.15 and tense not in ("can", "must")
    if verb is None:  # copula with a predicative adjective the subject can carry
        subj = _make_subject(rng, "HATXVF")
        tags = subj.noun.tags if subj.noun else "H"
        preds = [a for a in g.ADJECTIVES if set(a.tags) & set(tags)]
        c = Clause(None, tense, subj, neg=neg, pred=rng.choice(preds))
    elif verb.frame == "weather":
        c = Clause(verb, tense, NP(None, "it"), neg=neg)
    else:
        c = Clause(verb, tense, _make_subject(rng, verb.subj), neg=neg)
        if verb.frame in ("acc", "ditr"):
            c.acc = _make_np(rng, verb.obj, definite_only=neg)
        if verb.frame == "ditr":
            c.dat = _make_np(rng, "H", definite_only=neg)
        elif verb.frame == "dat":
            c.dat = _make_np(rng, verb.obj, definite_only=neg)
        if verb.adjuncts and rng.random() < (0.2 if simple else 0.4):
            c.adjunct = _make_adjunct(rng, rng.choice(verb.adjuncts))
    r = rng.random()
    if r < 0.25:
        options = [a for a, (_, tenses) in g.TIME_ADVERBS.items() if tense in tenses]
        c.adverb, c.front_adverb = rng.choice(options), (not simple and rng.random() < 0.5)
    elif r < 0.4 and not neg:
        c.adverb = rng.choice(list(g.FREQ_ADVERBS))
    return c


def _make_adjunct(rng: random.Random, kind: str) -> tuple:
    if kind == "manner":
        en = rng.choice(list(g.MANNER_ADVERBS))
        return ("manner", en, g.MANNER_ADVERBS[en])
    if kind == "loc":
        en, de, case = rng.choice([("in", "in", "dat"), ("behind", "hinter", "dat")])
    elif kind == "dir":
        en, de, case = rng.choice([("into", "in", "acc"), ("to", "zu", "dat")])
    elif kind == "with":
        en, de, case = "with", "mit", "dat"
    else:
        en, de, case = "for", "für", "acc"
    tags = "P" if kind in ("loc", "dir") else "HA"
    return (kind, en, de, case, _make_np(rng, tags, singular=kind in ("loc", "dir")))


def _make_sentence(rng: random.Random) -> Clause:
    kind = rng.choices(["simple", "sub_after", "sub_before", "that"], weights=[50, 20, 15, 15])[0]
    if kind == "simple":
        return _make_clause(rng)
    if kind == "that":  # "she says that ..." -> "sie sagt, dass ..."
        that_verbs = [v for v in g.VERBS if v.frame == "that"]
        main = _make_clause(rng, tense=rng.choice(["present", "past", "perfect"]), verbs=that_verbs)
        main.adjunct = ()
        main.front_adverb = main.adverb in g.TIME_ADVERBS  # "yesterday he said that" over "he said yesterday that"
        main.sub = _make_clause(rng, simple=True)
        main.sub.comp = ("that", "dass")
        return main
    en_comp = rng.choice(list(SUBORDINATORS))
    de_comp, tenses = SUBORDINATORS[en_comp]
    sub = _make_clause(rng, tense=rng.choice(sorted(tenses)) if tenses else None, simple=True)
    if tenses:  # temporal clauses: keep both clauses in the same time frame
        frame = PAST if sub.tense in PAST else set(TENSES) - PAST
        main_tense = rng.choice(sorted(frame))
    else:
        main_tense = None
    main = _make_clause(rng, tense=main_tense)
    if en_comp == "when" and sub.tense == "past":
        de_comp = "als"
    sub.comp = (en_comp, de_comp)
    if main.adverb == sub.adverb or (main.adverb in g.TIME_ADVERBS and sub.adverb in g.TIME_ADVERBS):
        main.adverb, main.front_adverb = "", False  # no "when he came today, she left yesterday"
    main.sub, main.sub_front = sub, kind == "sub_before"
    if main.sub_front:
        main.front_adverb = False
    return main


# ----------------------------------------------------------------------------- realisation


_ADVERB_DE = {**g.FREQ_ADVERBS, **{en: de for en, (de, _) in g.TIME_ADVERBS.items()}}


def _realise_np(w: _Words, phrase: NP, case: str, cid: int, prep: tuple[Word, str] | None = None):
    """(English words, German words) of a noun phrase, optionally behind a preposition."""
    en: list[Word] = [prep[0]] if prep else []
    de: list[Word] = [w.de(prep[1], cid, prep[0])] if prep else []
    if phrase.det == "it":
        return en + [e := w.en("it", cid)], de + [w.de("es", cid, e)]
    if phrase.det == "pron":
        e = w.en(phrase.word, cid)
        return en + [e], de + [w.de(next(d for x, d, _ in g.PRONOUNS if x == phrase.word), cid, e)]
    noun_en = phrase.noun.en_pl if phrase.plural else phrase.noun.en
    first = phrase.adj.en if phrase.adj else noun_en
    en_det = {"def": "the", "dem": "these" if phrase.plural else "this", "indef": g.indefinite_article(first),
              "poss": phrase.word, "num": phrase.word, "bare": ""}[phrase.det]
    de_det, decl = g.determiner(phrase.det, phrase.word, case, phrase.noun.gender, phrase.plural)
    if en_det:
        e = w.en(en_det, cid)
        en.append(e)
        if prep and phrase.det == "def" and (prep[1], de_det) in g.CONTRACTIONS:
            de[-1] = w.de(g.CONTRACTIONS[prep[1], de_det], cid, prep[0], e)
        else:
            de.append(w.de(de_det, cid, e))
    if phrase.adj:
        e = w.en(phrase.adj.en, cid)
        en.append(e)
        de.append(w.de(g.adjective_form(phrase.adj.de, decl, case, phrase.noun.gender, phrase.plural), cid, e))
    e = w.en(noun_en, cid)
    return en + [e], de + [w.de(phrase.noun.de_form(case, phrase.plural), cid, e)]


def _realise(w: _Words, c: Clause, cid: int, subordinate: bool) -> tuple[list[Word], list[Word]]:
    """Linearise one clause (and its attached subordinate clause) in both languages."""
    en_comp = [w.en(c.comp[0], cid)] if subordinate else []
    de_comp = [w.de(c.comp[1], cid, en_comp[0])] if subordinate else []
    en_subj, de_subj = _realise_np(w, c.subj, "nom", cid)
    person = c.subj.person if c.subj.det != "it" else "3sg"

    en_aux, en_main, de_right, en_pred, de_pred = [], [], [], [], []
    en_not = [w.en("not", cid)] if c.neg else []
    de_nicht = [w.de("nicht", cid, en_not[0])] if c.neg else []
    en_adv = [w.en(c.adverb, cid)] if c.adverb else []
    de_adv = [w.de(_ADVERB_DE[c.adverb], cid, en_adv[0])] if c.adverb else []
    if c.verb is None:  # copula: "is tired" -> "ist müde"; predicate adjective stays uninflected
        if c.tense == "will":
            en_aux = [w.en("will", cid)]
            en_main = [w.en("be", cid)]
            de_fin = w.de(g.aux_form("will", "present", person), cid, en_aux[0])
            de_right = [w.de("sein", cid, en_main[0])]
        else:
            en_aux = [w.en(g.en_be(c.tense, person), cid)]
            de_fin = w.de(g.aux_form("sein", c.tense, person), cid, en_aux[0])
        en_pred = [w.en(c.pred.en, cid)]
        de_pred = [w.de(c.pred.de, cid, en_pred[0])]
    else:
        de_fin, en_aux, en_main, de_right = _realise_verb(w, c, person, cid, subordinate)

    en_objs, de_objs = [], []
    for phrase, case in ((c.dat, "dat"), (c.acc, "acc")):
        if phrase is not None:
            e, d = _realise_np(w, phrase, case, cid)
            en_objs += e
            de_objs += d
    en_adj, de_adj = [], []
    if c.adjunct:
        if c.adjunct[0] == "manner":
            en_adj = [w.en(c.adjunct[1], cid)]
            de_adj = [w.de(c.adjunct[2], cid, en_adj[0])]
        else:
            _, en_p, de_p, case, phrase = c.adjunct
            en_adj, de_adj = _realise_np(w, phrase, case, cid, prep=(w.en(en_p, cid), de_p))

    sub_en, sub_de = _realise(w, c.sub, cid + 1, True) if c.sub else ([], [])
    is_time = c.adverb in g.TIME_ADVERBS
    front_en = en_adv if c.front_adverb else []
    mid_en = en_adv if (c.adverb and not is_time) else []
    end_en = en_adv if (is_time and not c.front_adverb) else []
    en = (front_en + en_comp + en_subj + en_aux + en_not + mid_en + en_main + en_pred
          + en_objs + en_adj + end_en)
    en = sub_en + en if c.sub_front else en + sub_en

    middle = ([] if c.front_adverb else de_adv) + de_objs + de_nicht + de_adj + de_pred
    if subordinate:  # verb-final: ... participle/infinitive + finite verb
        de = de_comp + de_subj + middle + de_right + [de_fin]
    else:  # verb-second: one constituent, finite verb, then subject in the middle field if moved
        if c.sub_front or c.front_adverb:
            de = (sub_de if c.sub_front else de_adv) + [de_fin] + de_subj + middle + de_right
        else:
            de = de_subj + [de_fin] + middle + de_right
        if c.sub and not c.sub_front:
            de = de + sub_de
    return en, de


def _realise_verb(w: _Words, c: Clause, person: str, cid: int, subordinate: bool):
    """German finite verb + right-bracket words, English auxiliaries + main verb words."""
    v = c.verb
    gv = v.german(c.subj.noun is not None and "A" in c.subj.noun.tags)
    third = person == "3sg"
    if c.tense in ("present", "past"):
        if c.neg:  # do-support: "does not see"; "does" stays unaligned, German has no auxiliary
            aux = [w.en(("does" if third else "do") if c.tense == "present" else "did", cid)]
            form = v.en
        else:
            aux, form = [], (v.en_3sg() if third else v.en) if c.tense == "present" else v.en_past
    elif c.tense == "perfect":
        aux, form = [w.en("has" if third else "have", cid)], v.en_pp
    else:
        aux, form = [w.en(c.tense, cid)], v.en
    main = [w.en(form, cid)] + ([w.en(v.particle, cid)] if v.particle else [])
    verb_word, particle = main[0], main[1:]

    if c.tense in ("present", "past"):
        fin = gv.finite(c.tense, person)
        if not gv.prefix:
            return w.de(fin, cid, verb_word), aux, main, []
        if subordinate:  # "weil er sie anruft": prefix rejoins the verb
            return w.de(gv.prefix + fin, cid, *main), aux, main, []
        return w.de(fin, cid, verb_word), aux, main, [w.de(gv.prefix, cid, *(particle or main))]
    if c.tense == "perfect":
        fin = w.de(g.aux_form(gv.aux, "present", person), cid, aux[0])
        return fin, aux, main, [w.de(gv.participle, cid, *main)]
    fin = w.de(g.aux_form(c.tense, "present", person), cid, aux[0])
    return fin, aux, main, [w.de(gv.infinitive, cid, *main)]


# ----------------------------------------------------------------------------- rendering


def _render(words: Sequence[Word], german: bool) -> str:
    tokens = [x.text for x in words]
    for i in range(1, len(words)):
        a, b = words[i - 1].clause, words[i].clause
        # German puts a comma at every clause boundary, English only after a fronted clause
        if a != b and (german or a > b):
            tokens[i - 1] += ","
    tokens[0] = tokens[0][0].upper() + tokens[0][1:]
    tokens[-1] += "."
    return " ".join(tokens)


def realise(clause: Clause, reorder: bool = True) -> dict:
    """The {en, de, align} pair for a clause spec (see `generate_corpus`)."""
    w = _Words()
    en, de = _realise(w, clause, 0, False)
    pos = {x.links[0]: i for i, x in enumerate(en)}
    if not reorder:  # same German words, stably sorted by the first English word each translates
        order = sorted(range(len(de)), key=lambda j: (min(pos[i] for i in de[j].links), j))
        de = [de[j] for j in order]
    align = sorted((pos[i], j) for j, x in enumerate(de) for i in x.links)
    return {"en": _render(en, False), "de": _render(de, True), "align": [list(a) for a in align]}


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
        pair = realise(_make_sentence(rng), reorder)
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
