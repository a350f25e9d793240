"""Random clause specs for the EN -> DE sentence corpus: what a sentence says, not yet its words.

A `Clause` names a verb (or a copula with a predicate), a tense, noun phrases for subject, objects
and an adjunct, adverbs, negation and at most one subordinate clause; `make_sentence` draws one
from a seeded `random.Random` using the lexicon in `grammar`. `realise` turns a spec into the
aligned English and German texts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from pipelines.speech import grammar as g
from pipelines.speech.verbs import VERBS, Verb


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
    verb: Verb | None  # None: copula clause with `pred`
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
                 verbs: Sequence[Verb] | None = None) -> Clause:
    """One clause; `simple` (subordinate clauses) means fewer adjuncts and no fronting.
    Without an explicit `verbs` list, 12% of clauses are copula clauses ("the dog is hungry")."""
    copula = verbs is None and rng.random() < 0.12
    verb = None if copula else rng.choice(verbs or [v for v in VERBS if v.frame != "that"])
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


def make_sentence(rng: random.Random) -> Clause:
    kind = rng.choices(["simple", "sub_after", "sub_before", "that"], weights=[50, 20, 15, 15])[0]
    if kind == "simple":
        return _make_clause(rng)
    if kind == "that":  # "she says that ..." -> "sie sagt, dass ..."
        that_verbs = [v for v in VERBS if v.frame == "that"]
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
