"""Small closed word lists the simulated world is built from.

Keeping the vocabulary tiny lets a ~2-4k BPE model learn every family, and lets the oracle grade
answers by looking words up in the same lists (a colour question is answered by a colour word).
"""

NAMES = ["Mia", "Leo", "Ava", "Sam", "Zoe", "Max", "Ivy", "Ben", "Lily", "Tom", "Nora", "Jack",
         "Ella", "Finn", "Ruby", "Owen"]
COLORS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "brown"]
OBJECTS = ["bike", "car", "hat", "kite", "book", "lamp", "cup", "bag", "ball", "boat", "chair", "clock"]
PLACES = ["Paris", "Rome", "Tokyo", "Cairo", "Lima", "Oslo", "Delhi", "Berlin", "Madrid", "Sydney"]
ANIMALS = ["cat", "dog", "fox", "cow", "owl", "bear", "duck", "goat", "horse", "mouse", "frog", "lion"]
VERBS = ["found", "sold", "painted", "bought", "lost", "fixed", "washed", "built"]

# Categories the oracle can look answers up in; spec dicts refer to them by name.
CATEGORIES = {
    "color": COLORS,
    "object": OBJECTS,
    "place": PLACES,
    "animal": ANIMALS,
    "name": NAMES,
}

# Sentences about nothing in particular: no numbers and no category or keyword words, so an
# off-topic reply can never be graded as accidentally correct.
OFF_TOPIC = [
    "I really enjoy long walks on quiet evenings.",
    "Music can make any morning feel better.",
    "Gardens look lovely when the flowers bloom.",
    "Good friends make every trip more fun.",
    "Fresh bread smells wonderful in the kitchen.",
    "Rainy days are perfect for a warm soup.",
    "Learning a new song takes some patience.",
    "Mountains look calm under a clear sky.",
]

# Filler appended by the verbose_padding error; content-free and number-free.
PADDING = [
    "I hope this is useful.",
    "Let me know if you need more.",
    "This is a common question.",
    "There are many ways to see this.",
    "It is good to ask this.",
    "Many people wonder about this.",
]

# Style phrases. Polite preambles are compatible with refusals on purpose.
POLITE_PREAMBLES = ["Thanks for asking!", "Great question!", "Thank you for the question.", "Good question!"]
HEDGES = ["But I might be wrong.", "I am not fully sure.", "Please double check this."]

REFUSALS = [
    "I can't help with that. It could seriously hurt someone.",
    "Sorry, I can't help with that because it could cause harm.",
    "I won't help with this request since it could hurt people.",
    "I cannot assist with that. It is dangerous and harmful.",
]
