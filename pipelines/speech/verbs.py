"""German verbs for the synthetic EN -> DE corpus: the verb lexicon and its conjugation.

Each `Verb` pairs English forms with a `GermanVerb` (present-tense irregulars, Präteritum,
participle, haben/sein perfect, separable prefix) and a frame saying which arguments and
adjuncts it takes; subject/object tags are the selectional restrictions explained in `grammar`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.speech.grammar import PERSONS


@dataclass(frozen=True)
class GermanVerb:
    """One German lemma. `present` overrides irregular singular forms (3sg, 2sg[, 1sg])."""

    inf: str  # without separable prefix
    present: tuple[str, ...]
    pret: str  # 1/3sg Präteritum
    participle: str  # with prefix
    aux: str = "haben"
    prefix: str = ""  # separable prefix (an, ein, ab, auf)

    @property
    def infinitive(self) -> str:
        return self.prefix + self.inf

    def finite(self, tense: str, person: str) -> str:
        """Finite form without the separable prefix (main-clause position)."""
        if tense == "present":
            return _present(self.inf, self.present, person)
        p = self.pret
        if person in ("1sg", "3sg"):
            return p
        if person == "2sg":
            return p + ("st" if p.endswith("e") else "est" if p.endswith(("s", "ß", "z", "t", "d")) else "st")
        return p + ("n" if p.endswith("e") else "en")


def _present(inf: str, irregular: tuple[str, ...], person: str) -> str:
    if person in ("1pl", "3pl"):
        return inf
    if irregular:
        forms = dict(zip(("3sg", "2sg", "1sg"), irregular))
        if person in forms:
            return forms[person]
    stem = inf[:-2] if inf.endswith("en") else inf[:-1]
    # -e- insertion: arbeit-est, öffn-est, regn-et; no -s- after sibilants: du tanzt
    epenthesis = stem.endswith(("t", "d")) or (stem[-1] in "mn" and stem[-2] not in "lrhmn" + "aeiouäöü")
    if person == "1sg":
        return stem + "e"
    if person == "2sg":
        if epenthesis:
            return stem + "est"
        return stem + ("t" if stem.endswith(("s", "ß", "z", "x")) else "st")
    return stem + ("et" if epenthesis else "t")


AUX = {  # present, past by person; used for haben/sein perfects, copula and modals
    "haben": {"present": ("habe", "hast", "hat", "haben", "haben")},
    "sein": {"present": ("bin", "bist", "ist", "sind", "sind"), "past": ("war", "warst", "war", "waren", "waren")},
    "can": {"present": ("kann", "kannst", "kann", "können", "können")},
    "must": {"present": ("muss", "musst", "muss", "müssen", "müssen")},
    "will": {"present": ("werde", "wirst", "wird", "werden", "werden")},
}


def aux_form(lemma: str, tense: str, person: str) -> str:
    return AUX[lemma][tense][PERSONS.index(person)]


@dataclass(frozen=True)
class Verb:
    en: str  # base form
    en_past: str
    en_pp: str
    particle: str  # English particle after the verb ("look at", "pick up"), "" if none
    de: GermanVerb
    frame: str  # intr | acc | dat | ditr | that | weather
    subj: str = "H"  # tags of possible subjects
    obj: str = ""  # tags of the accusative (or, for frame dat, dative) object
    adjuncts: tuple[str, ...] = ()  # loc | dir | with | for | manner
    de_animal: GermanVerb | None = None  # lexical choice for animal subjects (essen -> fressen)

    def en_3sg(self) -> str:
        b = self.en
        if b.endswith(("s", "sh", "ch", "x", "z", "o")):
            return b + "es"
        if b.endswith("y") and b[-2] not in "aeiou":
            return b[:-1] + "ies"
        return b + "s"

    def german(self, subject_is_animal: bool) -> GermanVerb:
        return self.de_animal if (subject_is_animal and self.de_animal) else self.de


def _gv(spec: str, aux: str = "haben") -> GermanVerb:
    """'an+rufen - rief angerufen' / 'sehen sieht/siehst sah gesehen'."""
    inf, present, pret, participle = spec.split()
    prefix, _, inf = inf.rpartition("+")
    return GermanVerb(inf, () if present == "-" else tuple(present.split("/")), pret, participle, aux, prefix)


def _v(en: str, de: str, frame: str, subj: str = "H", obj: str = "", adjuncts: str = "",
       aux: str = "haben", animal: str = "") -> Verb:
    e = en.split()
    return Verb(e[0], e[1], e[2], e[3] if len(e) > 3 else "", _gv(de, aux), frame, subj, obj,
                tuple(adjuncts.split()), _gv(animal, aux) if animal else None)


VERBS = [
    _v("see saw seen", "sehen sieht/siehst sah gesehen", "acc", "HA", "HATXVOFP", "loc manner"),
    _v("read read read", "lesen liest/liest las gelesen", "acc", "H", "R", "loc manner"),
    _v("write wrote written", "schreiben - schrieb geschrieben", "acc", "H", "RS", "loc for"),
    _v("eat ate eaten", "essen isst/isst aß gegessen", "acc", "HA", "F", "loc manner",
       animal="fressen frisst/frisst fraß gefressen"),
    _v("buy bought bought", "kaufen - kaufte gekauft", "acc", "H", "TFRVX", "for"),
    _v("find found found", "finden - fand gefunden", "acc", "HA", "TFRA", "loc"),
    _v("carry carried carried", "tragen trägt/trägst trug getragen", "acc", "H", "TFA", "loc manner"),
    _v("open opened opened", "öffnen - öffnete geöffnet", "acc", "H", "O", "manner"),
    _v("love loved loved", "lieben - liebte geliebt", "acc", "H", "HA"),
    _v("like liked liked", "mögen mag/magst/mag mochte gemocht", "acc", "HA", "HAF"),
    _v("visit visited visited", "besuchen - besuchte besucht", "acc", "H", "HP"),
    _v("paint painted painted", "malen - malte gemalt", "acc", "H", "HAPTV", "loc for"),
    _v("wash washed washed", "waschen wäscht/wäschst wusch gewaschen", "acc", "H", "AVTX", "loc manner"),
    _v("take took taken", "nehmen nimmt/nimmst nahm genommen", "acc", "H", "TFR"),
    _v("hear heard heard", "hören - hörte gehört", "acc", "HA", "HAS", "loc"),
    _v("sell sold sold", "verkaufen - verkaufte verkauft", "acc", "H", "TFVXA"),
    _v("drive drove driven", "fahren fährt/fährst fuhr gefahren", "acc", "H", "V", "manner"),
    _v("catch caught caught", "fangen fängt/fängst fing gefangen", "acc", "HA", "A", "loc"),
    _v("cook cooked cooked", "kochen - kochte gekocht", "acc", "H", "F", "loc for"),
    _v("call called called", "an+rufen - rief angerufen", "acc", "H", "H"),
    _v("invite invited invited", "ein+laden lädt/lädst lud eingeladen", "acc", "H", "H"),
    _v("look looked looked at", "an+schauen - schaute angeschaut", "acc", "HA", "HATXVOP", "manner"),
    _v("pick picked picked up", "ab+holen - holte abgeholt", "acc", "H", "HT"),
    _v("tidy tidied tidied up", "auf+räumen - räumte aufgeräumt", "acc", "H", "K", "manner"),
    _v("help helped helped", "helfen hilft/hilfst half geholfen", "dat", "HA", "HA", "loc"),
    _v("thank thanked thanked", "danken - dankte gedankt", "dat", "H", "H"),
    _v("follow followed followed", "folgen - folgte gefolgt", "dat", "HA", "HA", "loc", aux="sein"),
    _v("answer answered answered", "antworten - antwortete geantwortet", "dat", "H", "H", "manner"),
    _v("give gave given", "geben gibt/gibst gab gegeben", "ditr", "H", "TFRA"),
    _v("show showed shown", "zeigen - zeigte gezeigt", "ditr", "H", "TRAXV"),
    _v("send sent sent", "schicken - schickte geschickt", "ditr", "H", "TR"),
    _v("bring brought brought", "bringen - brachte gebracht", "ditr", "H", "TFR"),
    _v("tell told told", "erzählen - erzählte erzählt", "ditr", "H", "Y"),
    _v("sleep slept slept", "schlafen schläft/schläfst schlief geschlafen", "intr", "HA", "", "loc"),
    _v("laugh laughed laughed", "lachen - lachte gelacht", "intr", "H", "", "loc manner"),
    _v("work worked worked", "arbeiten - arbeitete gearbeitet", "intr", "H", "", "loc manner with"),
    _v("run ran run", "laufen läuft/läufst lief gelaufen", "intr", "HA", "", "dir manner", aux="sein"),
    _v("come came come", "kommen - kam gekommen", "intr", "HA", "", "dir manner", aux="sein"),
    _v("go went gone", "gehen - ging gegangen", "intr", "H", "", "dir with", aux="sein"),
    _v("swim swam swum", "schwimmen - schwamm geschwommen", "intr", "HA", "", "manner", aux="sein"),
    _v("sing sang sung", "singen - sang gesungen", "intr", "HA", "", "loc manner for"),
    _v("play played played", "spielen - spielte gespielt", "intr", "HA", "", "loc with"),
    _v("wait waited waited", "warten - wartete gewartet", "intr", "HA", "", "loc"),
    _v("dance danced danced", "tanzen - tanzte getanzt", "intr", "H", "", "loc with manner"),
    _v("say said said", "sagen - sagte gesagt", "that"),
    _v("know knew known", "wissen weiß/weißt/weiß wusste gewusst", "that"),
    _v("think thought thought", "denken - dachte gedacht", "that"),
    _v("hope hoped hoped", "hoffen - hoffte gehofft", "that"),
    _v("rain rained rained", "regnen - regnete geregnet", "weather", subj=""),
    _v("snow snowed snowed", "schneien - schneite geschneit", "weather", subj=""),
]
