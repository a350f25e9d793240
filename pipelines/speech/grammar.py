"""Lexicon and morphology for the synthetic English -> German translation corpus.

The lexicon is small (about 75 nouns, 45 verbs) so a tiny speech translation model can learn it,
but the German side has the phenomena that make translation non-trivial: grammatical gender,
four-way article/adjective agreement in nominative, accusative and dative, verb agreement, vowel
changes, weak nouns, separable verbs and haben/sein perfects. Clause-level word order lives in
`realise`; this module holds nouns, determiners, adjectives, adverbs and pronouns and turns
lemmas plus features into word forms (verbs: `verbs`).

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


# English "a"/"an" is chosen by the following word's first letter; the lexicon has no
# "a university"-type exceptions.
def indefinite_article(next_word: str) -> str:
    return "an" if next_word[0].lower() in "aeiou" else "a"


def en_be(tense: str, person: str) -> str:
    if tense == "present":
        return {"1sg": "am", "3sg": "is"}.get(person, "are")
    return "was" if person in ("1sg", "3sg") else "were"
