"""Words of a clause spec in English and German, with exact word alignment.

Every German word is created from the English words it translates, so the alignment is exact
and free. German order is produced by clause rules (verb-second main clauses, verb-final
subordinate clauses, participles/infinitives/separable prefixes in the right bracket,
extraposed subordinate clauses); `reorder=False` instead sorts the very same German words by
their English position, giving a monotonic ablation with identical words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pipelines.speech import grammar as g
from pipelines.speech import verbs
from pipelines.speech.clauses import NP, Clause

_ADVERB_DE = {**g.FREQ_ADVERBS, **{en: de for en, (de, _) in g.TIME_ADVERBS.items()}}


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
            de_fin = w.de(verbs.aux_form("will", "present", person), cid, en_aux[0])
            de_right = [w.de("sein", cid, en_main[0])]
        else:
            en_aux = [w.en(g.en_be(c.tense, person), cid)]
            de_fin = w.de(verbs.aux_form("sein", c.tense, person), cid, en_aux[0])
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
        fin = w.de(verbs.aux_form(gv.aux, "present", person), cid, aux[0])
        return fin, aux, main, [w.de(gv.participle, cid, *main)]
    fin = w.de(verbs.aux_form(c.tense, "present", person), cid, aux[0])
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
