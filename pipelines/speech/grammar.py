"""Lexicon and morphology for the synthetic English -> German translation corpus.

The lexicon is small (about 75 nouns, 45 verbs) so a tiny speech translation model can learn it,
but the German side has the phenomena that make translation non-trivial: grammatical gender,
four-way article/adjective agreement in nominative, accusative and dative, verb agreement, vowel
changes, weak nouns, separable verbs and haben/sein perfects. Clause-level word order lives in
`corpus.py`; this module only turns lemmas plus features into word forms.

Noun/verb tags are selectional restrictions (who can read what) so sentences stay plausible:
H human, A animal, R readable, S song, Y tellable, F food, T portable thing, X furniture,
O openable, V vehicle, P place, K tidy-able room.
"""

from __future__ import annotations

from dataclasses import dataclass

PERSONS = ("1sg", "2sg", "3sg", "1pl", "3pl")
CASES = ("nom", "acc", "dat")


# ----------------------------------------------------------------------------- nouns


@dataclass(frozen=True)
class Noun:
    en: str
    en_pl: str
    de: str
    de_pl: str
    gender: str  # m, f, n
    tags: str
    weak: str = ""  # oblique singular of weak masculines (den Jungen), "" if regular

    def de_form(self, case: str, plural: bool) -> str:
        if plural:
            if case == "dat" and not self.de_pl.endswith(("n", "s")):
                return self.de_pl + "n"
            return self.de_pl
        return self.weak if (self.weak and case != "nom") else self.de


def _nouns(spec: str) -> list[Noun]:
    out = []
    for line in spec.strip().splitlines():
        f = line.split()
        out.append(Noun(*f[:6], weak=f[6] if len(f) > 6 else ""))
    return out


# en_sg en_pl de_sg de_pl gender tags [weak oblique]
NOUNS = _nouns("""
man men Mann Männer m H
woman women Frau Frauen f H
child children Kind Kinder n H
boy boys Junge Jungen m H Jungen
girl girls Mädchen Mädchen n H
teacher teachers Lehrer Lehrer m H
doctor doctors Arzt Ärzte m H
student students Student Studenten m H Studenten
neighbour neighbours Nachbar Nachbarn m H Nachbarn
farmer farmers Bauer Bauern m H Bauern
mother mothers Mutter Mütter f H
father fathers Vater Väter m H
sister sisters Schwester Schwestern f H
brother brothers Bruder Brüder m H
friend friends Freund Freunde m H
cook cooks Koch Köche m H
king kings König Könige m H
queen queens Königin Königinnen f H
waiter waiters Kellner Kellner m H
singer singers Sänger Sänger m H
aunt aunts Tante Tanten f H
uncle uncles Onkel Onkel m H
dog dogs Hund Hunde m A
cat cats Katze Katzen f A
horse horses Pferd Pferde n A
bird birds Vogel Vögel m A
mouse mice Maus Mäuse f A
cow cows Kuh Kühe f A
fox foxes Fuchs Füchse m A
bear bears Bär Bären m A Bären
rabbit rabbits Hase Hasen m A Hasen
pig pigs Schwein Schweine n A
book books Buch Bücher n RTO
letter letters Brief Briefe m RTO
newspaper newspapers Zeitung Zeitungen f RT
story stories Geschichte Geschichten f RY
poem poems Gedicht Gedichte n R
joke jokes Witz Witze m Y
song songs Lied Lieder n S
table tables Tisch Tische m X
chair chairs Stuhl Stühle m X
door doors Tür Türen f O
window windows Fenster Fenster n O
car cars Auto Autos n V
bus buses Bus Busse m V
truck trucks Lastwagen Lastwagen m V
bicycle bicycles Fahrrad Fahrräder n T
ball balls Ball Bälle m T
key keys Schlüssel Schlüssel m T
bag bags Tasche Taschen f TO
lamp lamps Lampe Lampen f T
clock clocks Uhr Uhren f T
picture pictures Bild Bilder n T
gift gifts Geschenk Geschenke n TO
phone phones Telefon Telefone n T
hat hats Hut Hüte m T
flower flowers Blume Blumen f T
box boxes Kiste Kisten f TO
cup cups Tasse Tassen f T
computer computers Computer Computer m T
cake cakes Kuchen Kuchen m F
apple apples Apfel Äpfel m F
soup soups Suppe Suppen f F
egg eggs Ei Eier n F
pear pears Birne Birnen f F
sausage sausages Wurst Würste f F
banana bananas Banane Bananen f F
carrot carrots Karotte Karotten f F
garden gardens Garten Gärten m P
house houses Haus Häuser n PK
city cities Stadt Städte f P
park parks Park Parks m P
school schools Schule Schulen f P
kitchen kitchens Küche Küchen f PK
forest forests Wald Wälder m P
station stations Bahnhof Bahnhöfe m P
village villages Dorf Dörfer n P
room rooms Zimmer Zimmer n PK
library libraries Bibliothek Bibliotheken f P
office offices Büro Büros n PK
""")


# ----------------------------------------------------------------------------- determiners

_GI = {"m": 0, "f": 1, "n": 2, "pl": 3}  # column in the tables below

DEF_ARTICLE = {
    "nom": ("der", "die", "das", "die"),
    "acc": ("den", "die", "das", "die"),
    "dat": ("dem", "der", "dem", "den"),
}
# endings added to dies- (der-word) and ein/mein/unser (ein-word; plural only for possessives)
DIES_END = {"nom": ("er", "e", "es", "e"), "acc": ("en", "e", "es", "e"), "dat": ("em", "er", "em", "en")}
EIN_END = {"nom": ("", "e", "", "e"), "acc": ("en", "e", "", "e"), "dat": ("em", "er", "em", "en")}

# adjective endings by declension class: weak after der-words, mixed after ein-words, strong
# without a determiner (only plurals here: bare plurals and numbers)
ADJ_END = {
    "weak": {"nom": ("e", "e", "e", "en"), "acc": ("en", "e", "e", "en"), "dat": ("en", "en", "en", "en")},
    "mixed": {"nom": ("er", "e", "es", "en"), "acc": ("en", "e", "es", "en"), "dat": ("en", "en", "en", "en")},
    "strong": {"nom": ("", "", "", "e"), "acc": ("", "", "", "e"), "dat": ("", "", "", "en")},
}

POSSESSIVES = {"my": "mein", "your": "dein", "his": "sein", "her": "ihr", "our": "unser", "their": "ihr"}
NUMBERS = {"two": "zwei", "three": "drei", "four": "vier", "five": "fünf", "six": "sechs",
           "seven": "sieben", "eight": "acht", "nine": "neun", "ten": "zehn", "twelve": "zwölf"}


def determiner(kind: str, word: str, case: str, gender: str, plural: bool) -> tuple[str, str]:
    """German determiner form and the adjective declension class it triggers.

    kind: def | dem (this/these) | indef | poss | num | bare.
    """
    col = _GI["pl" if plural else gender]
    if kind == "def":
        return DEF_ARTICLE[case][col], "weak"
    if kind == "dem":
        return "dies" + DIES_END[case][col], "weak"
    if kind in ("indef", "poss"):
        stem = "ein" if kind == "indef" else POSSESSIVES[word]
        return stem + EIN_END[case][col], ("weak" if plural else "mixed")
    if kind == "num":
        return NUMBERS[word], "strong"
    return "", "strong"


def adjective_form(stem: str, decl: str, case: str, gender: str, plural: bool) -> str:
    ending = ADJ_END[decl][case][_GI["pl" if plural else gender]]
    if stem.endswith("e") and ending.startswith("e"):  # müde + en -> müden
        ending = ending[1:]
    return stem + ending


# prepositions that fuse with the definite article (in dem -> im)
CONTRACTIONS = {("in", "dem"): "im", ("in", "das"): "ins", ("zu", "dem"): "zum", ("zu", "der"): "zur"}


# ----------------------------------------------------------------------------- adjectives, adverbs


@dataclass(frozen=True)
class Adj:
    en: str
    de: str
    tags: str  # nouns it may modify (any shared tag)


ADJECTIVES = [Adj(*line.split()) for line in """
big groß HAXTVPFKO
small klein HAXTVPFKO
old alt HAXTVPRKO
new neu XTVPRKO
young jung HA
red rot TXVO
blue blau TXVO
green grün TXVOF
black schwarz ATXVO
white weiß ATXVO
beautiful schön HAXTVPKOS
good gut HAFRSY
happy glücklich HA
tired müde HA
hungry hungrig HA
clever klug HA
friendly freundlich HA
heavy schwer TXV
funny lustig HARYS
long lang RYS
fresh frisch F
sweet süß F
""".strip().splitlines()]

# time adverbs: fronted or clause-final in English, first in the German middle field.
# The tenses each one is compatible with keep "yesterday ... will" out.
TIME_ADVERBS = {
    "yesterday": ("gestern", {"past"}),  # English rejects "yesterday he has seen"
    "today": ("heute", {"present", "past", "perfect", "will", "can", "must"}),
    "tomorrow": ("morgen", {"present", "will", "can", "must"}),
    "now": ("jetzt", {"present", "can", "must"}),
    "later": ("später", {"will", "can", "must"}),
}
# frequency adverbs sit before the English main verb, after the German finite verb
FREQ_ADVERBS = {"always": "immer", "often": "oft", "sometimes": "manchmal", "rarely": "selten",
                "usually": "meistens"}
MANNER_ADVERBS = {"quickly": "schnell", "slowly": "langsam", "quietly": "leise",
                  "carefully": "vorsichtig", "loudly": "laut", "well": "gut"}

# subject pronouns: English, German, person
PRONOUNS = [("I", "ich", "1sg"), ("you", "du", "2sg"), ("he", "er", "3sg"), ("she", "sie", "3sg"),
            ("we", "wir", "1pl"), ("they", "sie", "3pl")]


# ----------------------------------------------------------------------------- verbs


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

# English "a"/"an" is chosen by the following word's first letter; the lexicon has no
# "a university"-type exceptions.
def indefinite_article(next_word: str) -> str:
    return "an" if next_word[0].lower() in "aeiou" else "a"


def en_be(tense: str, person: str) -> str:
    if tense == "present":
        return {"1sg": "am", "3sg": "is"}.get(person, "are")
    return "was" if person in ("1sg", "3sg") else "were"
