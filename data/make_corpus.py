#!/usr/bin/env python3
"""Generate the synthetic training corpora for charrnn.

Everything here is invented by this project: a small hand-written grammar
produces stage-play text (plays.txt) and a syllable generator produces
personal names (names.txt).  The output is fully deterministic: a fixed
seed, no set iteration, explicit UTF-8 and "\n" line endings, so re-running
the script reproduces every file byte for byte.

Usage:  python3 data/make_corpus.py [OUTPUT_DIR]   (default: this directory)
"""

import os
import random
import sys

SEED = 20240601
PLAYS_TARGET_CHARS = 450_000  # stop adding plays once we pass this
NAMES_COUNT = 4000
ACCENT_SHARE = 0.03

# ---------------------------------------------------------------------------
# Vocabulary (hand-written).  Nouns are (singular, plural).
# ---------------------------------------------------------------------------

NOUNS = [
    ("king", "kings"), ("queen", "queens"), ("lord", "lords"), ("lady", "ladies"),
    ("knight", "knights"), ("father", "fathers"), ("mother", "mothers"),
    ("son", "sons"), ("daughter", "daughters"), ("brother", "brothers"),
    ("sister", "sisters"), ("friend", "friends"), ("enemy", "enemies"),
    ("servant", "servants"), ("soldier", "soldiers"), ("guard", "guards"),
    ("fool", "fools"), ("knave", "knaves"), ("villain", "villains"),
    ("stranger", "strangers"), ("child", "children"), ("man", "men"),
    ("woman", "women"), ("people", "people"), ("crown", "crowns"),
    ("throne", "thrones"), ("sword", "swords"), ("shield", "shields"),
    ("ring", "rings"), ("letter", "letters"), ("cup", "cups"), ("wine", "wines"),
    ("bread", "loaves"), ("gold", "gold"), ("coin", "coins"), ("key", "keys"),
    ("door", "doors"), ("gate", "gates"), ("wall", "walls"), ("tower", "towers"),
    ("hall", "halls"), ("chamber", "chambers"), ("castle", "castles"),
    ("house", "houses"), ("garden", "gardens"), ("field", "fields"),
    ("forest", "forests"), ("river", "rivers"), ("sea", "seas"), ("ship", "ships"),
    ("road", "roads"), ("hill", "hills"), ("city", "cities"), ("town", "towns"),
    ("land", "lands"), ("world", "worlds"), ("heaven", "heavens"),
    ("earth", "earth"), ("sun", "suns"), ("moon", "moons"), ("star", "stars"),
    ("sky", "skies"), ("wind", "winds"), ("storm", "storms"), ("rain", "rains"),
    ("fire", "fires"), ("night", "nights"), ("day", "days"),
    ("morning", "mornings"), ("hour", "hours"), ("year", "years"),
    ("heart", "hearts"), ("hand", "hands"), ("eye", "eyes"), ("face", "faces"),
    ("head", "heads"), ("tongue", "tongues"), ("blood", "blood"),
    ("tear", "tears"), ("voice", "voices"), ("name", "names"), ("word", "words"),
    ("oath", "oaths"), ("promise", "promises"), ("secret", "secrets"),
    ("truth", "truths"), ("lie", "lies"), ("honour", "honours"),
    ("love", "loves"), ("grief", "griefs"), ("fear", "fears"), ("hope", "hopes"),
    ("joy", "joys"), ("sorrow", "sorrows"), ("anger", "angers"),
    ("peace", "peace"), ("war", "wars"), ("death", "deaths"), ("life", "lives"),
    ("fortune", "fortunes"), ("fate", "fates"), ("grace", "graces"),
    ("mercy", "mercies"), ("justice", "justice"), ("shame", "shames"),
    ("dream", "dreams"), ("ghost", "ghosts"), ("spirit", "spirits"),
    ("soul", "souls"), ("god", "gods"), ("prayer", "prayers"), ("song", "songs"),
    ("tale", "tales"), ("horse", "horses"), ("dog", "dogs"), ("bird", "birds"),
    ("rose", "roses"), ("tree", "trees"), ("stone", "stones"),
    ("candle", "candles"), ("bell", "bells"), ("drum", "drums"),
    ("banner", "banners"), ("army", "armies"), ("battle", "battles"),
    ("wedding", "weddings"), ("feast", "feasts"), ("grave", "graves"),
    ("journey", "journeys"), ("purse", "purses"), ("cloak", "cloaks"),
    ("table", "tables"), ("bed", "beds"), ("window", "windows"),
    ("counsel", "counsels"), ("duty", "duties"), ("debt", "debts"),
    ("kingdom", "kingdoms"), ("council", "councils"), ("messenger", "messengers"),
]

ADJECTIVES = [
    "good", "bad", "noble", "gentle", "sweet", "fair", "foul", "false", "true",
    "honest", "wicked", "cruel", "kind", "brave", "bold", "proud", "humble",
    "poor", "rich", "old", "young", "ancient", "new", "dark", "bright", "black",
    "white", "red", "green", "golden", "silver", "cold", "warm", "bitter",
    "heavy", "light", "strange", "wild", "quiet", "loud", "sad", "merry",
    "weary", "idle", "wise", "foolish", "mad", "holy", "secret", "hidden",
    "broken", "little", "great", "long", "short", "deep", "high", "low",
    "dear", "loyal", "faithless", "sick", "pale", "cursed", "blessed", "hollow",
    "distant", "royal", "common", "empty", "sudden", "gentle", "grim", "sorry",
    "wretched", "worthy", "mighty", "tender", "fierce", "sullen",
]

# Adjectives that sound natural after "is"/"art" ("the night is cold").
PRED_ADJ = [
    "cold", "dark", "late", "near", "far", "true", "false", "dead", "gone",
    "lost", "safe", "weary", "sick", "mad", "wise", "strange", "heavy", "young",
    "old", "sad", "merry", "proud", "kind", "cruel", "fair", "honest", "ready",
    "quiet", "bitter", "pale", "silent", "sorry", "afraid", "wronged", "loyal",
]

# Verbs: (base, third person, past, past participle).
TRANSITIVE = [
    ("love", "loves", "loved", "loved"), ("hate", "hates", "hated", "hated"),
    ("fear", "fears", "feared", "feared"), ("seek", "seeks", "sought", "sought"),
    ("find", "finds", "found", "found"), ("keep", "keeps", "kept", "kept"),
    ("hold", "holds", "held", "held"), ("take", "takes", "took", "taken"),
    ("give", "gives", "gave", "given"), ("bring", "brings", "brought", "brought"),
    ("send", "sends", "sent", "sent"), ("see", "sees", "saw", "seen"),
    ("hear", "hears", "heard", "heard"), ("know", "knows", "knew", "known"),
    ("trust", "trusts", "trusted", "trusted"), ("serve", "serves", "served", "served"),
    ("follow", "follows", "followed", "followed"), ("betray", "betrays", "betrayed", "betrayed"),
    ("kill", "kills", "killed", "killed"), ("save", "saves", "saved", "saved"),
    ("lose", "loses", "lost", "lost"), ("steal", "steals", "stole", "stolen"),
    ("break", "breaks", "broke", "broken"), ("mend", "mends", "mended", "mended"),
    ("guard", "guards", "guarded", "guarded"), ("wake", "wakes", "woke", "woken"),
    ("call", "calls", "called", "called"), ("leave", "leaves", "left", "left"),
    ("bury", "buries", "buried", "buried"), ("praise", "praises", "praised", "praised"),
    ("curse", "curses", "cursed", "cursed"), ("bless", "blesses", "blessed", "blessed"),
    ("forgive", "forgives", "forgave", "forgiven"), ("remember", "remembers", "remembered", "remembered"),
    ("forget", "forgets", "forgot", "forgotten"), ("answer", "answers", "answered", "answered"),
    ("read", "reads", "read", "read"), ("write", "writes", "wrote", "written"),
    ("open", "opens", "opened", "opened"), ("shut", "shuts", "shut", "shut"),
    ("wear", "wears", "wore", "worn"), ("win", "wins", "won", "won"),
    ("pay", "pays", "paid", "paid"), ("owe", "owes", "owed", "owed"),
    ("doubt", "doubts", "doubted", "doubted"), ("wrong", "wrongs", "wronged", "wronged"),
    ("spare", "spares", "spared", "spared"), ("defend", "defends", "defended", "defended"),
    ("honour", "honours", "honoured", "honoured"), ("mock", "mocks", "mocked", "mocked"),
    ("greet", "greets", "greeted", "greeted"), ("tell", "tells", "told", "told"),
]

INTRANSITIVE = [
    ("come", "comes", "came", "come"), ("go", "goes", "went", "gone"),
    ("sleep", "sleeps", "slept", "slept"), ("weep", "weeps", "wept", "wept"),
    ("die", "dies", "died", "died"), ("live", "lives", "lived", "lived"),
    ("fight", "fights", "fought", "fought"), ("ride", "rides", "rode", "ridden"),
    ("fly", "flies", "flew", "flown"), ("fall", "falls", "fell", "fallen"),
    ("rise", "rises", "rose", "risen"), ("wait", "waits", "waited", "waited"),
    ("watch", "watches", "watched", "watched"), ("pray", "prays", "prayed", "prayed"),
    ("sing", "sings", "sang", "sung"), ("speak", "speaks", "spoke", "spoken"),
    ("laugh", "laughs", "laughed", "laughed"), ("tremble", "trembles", "trembled", "trembled"),
    ("linger", "lingers", "lingered", "lingered"), ("wander", "wanders", "wandered", "wandered"),
    ("return", "returns", "returned", "returned"), ("rest", "rests", "rested", "rested"),
    ("stand", "stands", "stood", "stood"), ("kneel", "kneels", "knelt", "knelt"),
    ("sigh", "sighs", "sighed", "sighed"), ("dance", "dances", "danced", "danced"),
]

ADVERBS = [
    "now", "soon", "again", "tonight", "today", "tomorrow", "here", "there",
    "alone", "together", "away", "still", "ever", "never", "yet", "once more",
    "in haste", "in truth", "in secret", "at once", "by night", "by day",
    "too late", "no more", "for ever", "anon",
]

PREPOSITIONS = [
    "in", "to", "from", "with", "by", "upon", "under", "before", "behind",
    "beyond", "near", "across", "through", "against", "without", "for",
]

# Simple opening interjections and short replies.
INTERJECTIONS = ["O", "Alas", "Ay", "Nay", "Hark", "Fie", "Come", "Peace",
                 "Look", "Well", "Why", "Soft", "Marry", "Indeed", "Lo"]
SHORT_REPLIES = [
    "Ay", "Nay", "Even so", "Not I", "I will", "I shall", "It is done",
    "Most true", "I know it", "Away", "Farewell", "No more", "Patience",
    "Be it so", "As you will", "With all my heart", "I swear it",
]
GENERIC_VOCATIVES = ["my lord", "madam", "good sir", "sweet lady", "friend",
                     "my liege", "gentle cousin", "sirrah", "good fellow",
                     "my love", "father", "brother", "sister", "old man"]

# Invented dramatis personae: (speaker heading, how others address them).
CHARACTERS = [
    ("LORD ARDEN", "Arden"), ("LADY MARGERY", "Margery"),
    ("KING ALDRIC", "my liege"), ("QUEEN SABREN", "my queen"),
    ("PRINCE CASSEL", "Cassel"), ("DUKE HALVARD", "Halvard"),
    ("SIR EDMER", "Edmer"), ("LADY WREN", "Wren"), ("OSWIN", "Oswin"),
    ("BELLAMY", "Bellamy"), ("CORVIN", "Corvin"), ("ELSPETH", "Elspeth"),
    ("FATHER ANSELM", "good father"), ("CAPTAIN THORNE", "Thorne"),
    ("OLD HOBB", "Hobb"), ("NELL", "Nell"), ("TOBIAS GRAY", "Tobias"),
    ("DAME ORRA", "Orra"), ("FIRST GUARD", "fellow"), ("MESSENGER", "sirrah"),
    ("BRAND", "Brand"), ("MARLOW", "Marlow"),
]

SETTINGS = [
    "A hall in the castle.", "The king's chamber.", "A garden.",
    "Before the city gates.", "A road near the forest.", "A ship at sea.",
    "The battlements.", "A street in the town.", "A chapel.",
    "A room in Arden's house.", "The queen's apartment.", "A field near the camp.",
    "A wood. Night.", "The council chamber.", "A prison.", "An inn.",
    "The same. Another part of the castle.", "A churchyard.",
    "The shore.", "A tent on the field.", "The throne room.",
    "A bridge over the river.", "The kitchen of the castle.",
    "A heath. Storm.", "Outside the tower.",
]

TITLE_PATTERNS = ["THE TRAGEDY OF {}", "THE HISTORY OF {}", "THE LAMENT OF {}",
                  "THE FALL OF {}", "THE COMEDY OF {}", "THE WINTER OF {}"]

ROMAN = ["I", "II", "III", "IV", "V"]

# ---------------------------------------------------------------------------
# Play grammar
# ---------------------------------------------------------------------------


class Grammar:
    def __init__(self, rng):
        self.r = rng

    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p):
        return self.r.random() < p

    # --- noun phrases -----------------------------------------------------
    def np(self, plural=None):
        """A noun phrase; returns (text, is_plural)."""
        if plural is None:
            plural = self.chance(0.25)
        sing, plur = self.pick(NOUNS)
        noun = plur if plural else sing
        if self.chance(0.45):
            noun = self.pick(ADJECTIVES) + " " + noun
        if plural:
            det = self.pick(["the", "my", "thy", "his", "her", "our", "your",
                             "these", "those", "all the", "many", "their"])
        else:
            det = self.pick(["the", "the", "my", "thy", "his", "her", "our",
                             "this", "that", "a", "no", "every"])
            if det == "a" and (noun[0] in "aeiou" or noun.startswith("hon")):
                det = "an"
        return det + " " + noun, plural

    def obj(self):
        if self.chance(0.3):
            return self.pick(["me", "thee", "him", "her", "us", "them", "you", "it"])
        return self.np()[0]

    def adjunct(self):
        """Optional trailing prepositional phrase or adverb."""
        x = self.r.random()
        if x < 0.30:
            return " " + self.pick(PREPOSITIONS) + " " + self.np()[0]
        if x < 0.45:
            return " " + self.pick(ADVERBS)
        return ""

    # --- subjects ---------------------------------------------------------
    def subject(self, others):
        """Returns (text, person) where person is 1s, 2s, 3s or pl."""
        x = self.r.random()
        if x < 0.22:
            return "I", "1s"
        if x < 0.38:
            return "thou", "2s"
        if x < 0.50:
            return self.pick(["he", "she"]), "3s"
        if x < 0.60:
            return self.pick(["we", "they", "you"]), "pl"
        if x < 0.68 and others:
            return self.pick(others)[1], "3s"
        text, plural = self.np()
        return text, ("pl" if plural else "3s")

    # --- verb phrases -----------------------------------------------------
    def verb_phrase(self, person):
        trans = self.chance(0.6)
        base, third, past, pp = self.pick(TRANSITIVE if trans else INTRANSITIVE)
        tense = self.r.random()
        have = {"1s": "have", "2s": "hast", "3s": "hath", "pl": "have"}[person]
        do = {"1s": "do", "2s": "dost", "3s": "doth", "pl": "do"}[person]
        if tense < 0.28:
            v = third if person == "3s" else (do + " " + base if person == "2s" else base)
        elif tense < 0.46:
            v = ("didst " + base) if person == "2s" else past
        elif tense < 0.64:
            aux = self.pick(["wilt", "shalt"]) if person == "2s" else self.pick(["will", "shall"])
            v = aux + " " + base
        elif tense < 0.80:
            v = have + " " + pp
        elif tense < 0.90:
            v = do + " " + base
        else:
            modal = self.pick(["must", "may", "cannot", "would", "should", "dare not"])
            if person == "2s":
                modal = {"must": "must", "may": "mayst", "cannot": "canst not",
                         "would": "wouldst", "should": "shouldst",
                         "dare not": "dar'st not"}[modal]
            v = modal + " " + base
        if trans:
            v += " " + self.obj()
        return v + self.adjunct()

    def copula(self, person):
        return {"1s": "am", "2s": "art", "3s": "is", "pl": "are"}[person]

    # --- sentences --------------------------------------------------------
    def clause(self, others):
        subj, person = self.subject(others)
        if self.chance(0.18):
            # "the night is cold" / "thou art a false knave"
            if self.chance(0.6):
                pred = self.pick(PRED_ADJ)
                if self.chance(0.2):
                    pred = self.pick(["too", "most", "very", "so"]) + " " + pred
            else:
                pred = self.np(plural=(person == "pl"))[0]
            return subj + " " + self.copula(person) + " " + pred
        return subj + " " + self.verb_phrase(person)

    def question(self, others):
        x = self.r.random()
        if x < 0.3:
            wh = self.pick(["Why", "Where", "When", "How"])
            sing, plur = self.pick(TRANSITIVE + INTRANSITIVE)[:2]
            who = self.pick(["thou", "he", "she", "the king", "my lord"])
            aux = "dost" if who == "thou" else "doth"
            s = f"{wh} {aux} {who} {sing}"
            if (sing, plur) in [v[:2] for v in TRANSITIVE]:
                s += " " + self.obj()
            return s + self.adjunct() + "?"
        if x < 0.5:
            aux = self.pick(["Wilt thou", "Canst thou", "Shall we", "Shall I",
                             "Dost thou", "Didst thou", "Will you"])
            base = self.pick(TRANSITIVE)[0]
            return f"{aux} {base} {self.obj()}{self.adjunct()}?"
        if x < 0.7:
            np, plural = self.np()
            return f"{self.pick(['Where', 'What', 'Why'])} {'are' if plural else 'is'} {np}?"
        if x < 0.85:
            pp = self.pick(TRANSITIVE)[3]
            return f"What {self.pick(['hast thou', 'hath he', 'have they', 'have I', 'hath she'])} {pp}?"
        return self.pick(["Who goes there?", "What news?", "Is it so?",
                          "What say you?", "How now?", "Who comes here?",
                          "What is the hour?", "Art thou mad?",
                          "Dost thou hear me?", "What would you have?"])

    def imperative(self, others):
        x = self.r.random()
        if x < 0.5:
            base = self.pick(TRANSITIVE)[0]
            s = f"{base} {self.obj()}{self.adjunct()}"
        elif x < 0.75:
            base = self.pick(INTRANSITIVE)[0]
            s = f"{base}{self.adjunct() or ' ' + self.pick(ADVERBS)}"
        elif x < 0.9:
            base = self.pick(TRANSITIVE + INTRANSITIVE)[0]
            s = f"let {self.pick(['us', 'me', 'him', 'them'])} {base}"
        else:
            s = self.pick(["hold thy tongue", "speak", "be gone", "stand fast",
                           "look to it", "have mercy", "come hither",
                           "keep the gate", "fetch a light"])
        s = s[0].upper() + s[1:]
        if self.chance(0.45):
            s += ", " + self.vocative(others)
        return s + self.pick(["!", ".", "."])

    def exclamation(self, others):
        x = self.r.random()
        if x < 0.4:
            adj = self.pick(ADJECTIVES)
            sing = self.pick(NOUNS)[0]
            return f"O {adj} {sing}!"
        if x < 0.7:
            return f"{self.pick(['Alas', 'Fie upon', 'Woe to', 'Out upon', 'Heaven keep'])} {self.obj()}!"
        return self.pick(SHORT_REPLIES) + ", " + self.vocative(others) + "."

    def vocative(self, others):
        if others and self.chance(0.55):
            v = self.pick(others)[1]
            if v[0].isupper() and self.chance(0.3):
                v = self.pick(["good", "sweet", "brave", "poor", "dear"]) + " " + v
            return v
        return self.pick(GENERIC_VOCATIVES)

    def statement(self, others):
        """A declarative sentence, possibly compound, with punctuation."""
        x = self.r.random()
        if x < 0.45:
            s = self.clause(others)
        elif x < 0.65:
            s = self.clause(others) + self.pick([", and ", ", but ", "; for ", ", yet ", ", or "]) + self.clause(others)
        elif x < 0.78:
            s = self.pick(["if ", "when ", "though ", "since ", "before "]) + self.clause(others) + ", " + self.clause(others)
        elif x < 0.88:
            s = self.pick(INTERJECTIONS) + ", " + self.clause(others)
        else:
            s = self.clause(others) + ", " + self.vocative(others)
        s = s[0].upper() + s[1:]
        return s + self.pick([".", ".", ".", "!", ";"]).replace(";", ".")

    def sentence(self, others):
        x = self.r.random()
        if x < 0.55:
            return self.statement(others)
        if x < 0.72:
            return self.question(others)
        if x < 0.87:
            return self.imperative(others)
        return self.exclamation(others)

    def speech_line(self, others):
        """One printed line of verse-ish speech, 1-2 sentences, <= 78 chars."""
        while True:
            line = self.sentence(others)
            if len(line) < 38 and self.chance(0.6):
                line += " " + self.sentence(others)
            if len(line) <= 78:
                return line


def make_plays(rng):
    g = Grammar(rng)
    out = []
    total = 0
    used_titles = []
    while total < PLAYS_TARGET_CHARS:
        # Each play has its own cast of 9-13 characters.
        cast = rng.sample(CHARACTERS, rng.randint(9, 13))
        while True:
            lead = rng.choice(cast)[0]
            if lead in ("FIRST GUARD", "MESSENGER"):
                continue
            title = rng.choice(TITLE_PATTERNS).format(lead)
            if title not in used_titles:
                break
        used_titles.append(title)
        parts = [title, "", ""]
        for act in range(5):
            for scene in range(1, rng.randint(3, 5) + 1):
                setting = rng.choice(SETTINGS)
                parts.append(f"ACT {ROMAN[act]}. SCENE {scene}. {setting}")
                present = rng.sample(cast, rng.randint(2, 4))
                names = [c[0] for c in present]
                enter = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
                parts.append(f"Enter {enter}.")
                parts.append("")
                last = None
                for _ in range(rng.randint(14, 30)):
                    # No one speaks twice in a row.
                    speaker = rng.choice([c for c in present if c is not last])
                    last = speaker
                    others = [c for c in present if c is not speaker]
                    parts.append(speaker[0] + ":")
                    n_lines = rng.choices([1, 2, 3, 4], weights=[30, 35, 22, 13])[0]
                    for _ in range(n_lines):
                        parts.append(g.speech_line(others))
                    parts.append("")
                parts.append(rng.choice(["Exeunt.", "Exeunt.", "Exit " + last[0] + "."]))
                parts.append("")
        parts.append("THE END.")
        parts.append("")
        parts.append("")
        text = "\n".join(parts) + "\n"
        out.append(text)
        total += len(text)
    return "".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------
# Name generator
# ---------------------------------------------------------------------------

ONSETS = ["b", "br", "c", "ch", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k",
          "l", "m", "n", "p", "r", "s", "sh", "st", "t", "th", "tr", "v", "w",
          "z", "y", "cl", "gw", "kr"]
MID_ONSETS = ["b", "d", "f", "g", "l", "m", "n", "r", "s", "t", "v", "th", "ll",
              "nn", "rr", "ss", "k", "z", "w"]
# Single vowels dominate; diphthongs are rarer.
NUCLEI = ["a"] * 6 + ["e"] * 5 + ["i"] * 4 + ["o"] * 4 + ["u"] * 2 + \
         ["ai", "ea", "ie", "ou", "ae", "au", "y"]
CODAS = ["n", "r", "l", "s", "m", "th", "nd", "rn", "rd", "ld"]
ENDINGS = ["a", "ia", "el", "an", "en", "or", "is", "ine", "ette", "wyn", "ric",
           "ard", "ith", "ana", "ella", "o", "us", "ara", "ion", "ey", "in",
           "as", "ira", "on", "ald", "ius", "wen", "na", "dor", "mund", "e",
           "a", "an", "el", "o", "ie"]
VOWELS = "aeiouy"
# Plain vowel/consonant -> accented variants used for the non-ASCII share.
ACCENTS = {"a": "áàâäå", "e": "éèêë", "i": "íï", "o": "óöôø", "u": "úü",
           "n": "ñ", "c": "ç"}


def make_name(rng):
    """Onset + nucleus (+ coda) syllables, then a name-like ending."""
    n_syll = rng.choices([1, 2, 3], weights=[50, 42, 8])[0]
    s = ""
    for i in range(n_syll):
        if i == 0:
            onset = "" if rng.random() < 0.15 else rng.choice(ONSETS)
        else:
            # Syllables after the first always start with one consonant
            # sound, and only a simple one if the previous syllable had a coda.
            onset = rng.choice(MID_ONSETS)
            if s[-1] not in VOWELS:
                onset = rng.choice(["d", "l", "m", "n", "r", "v", "w", "b", "g"])
        s += onset + rng.choice(NUCLEI)
        if rng.random() < 0.3:
            s += rng.choice(CODAS)
    # Add an ending, joining with a consonant if both sides are vowels.
    end = rng.choice(ENDINGS)
    if s[-1] in VOWELS and end[0] in VOWELS:
        s += rng.choice(["l", "r", "n", "d", "v", "s", "th", "m"])
    elif s[-1] not in VOWELS and end[0] not in VOWELS and len(end) > 2:
        return ""  # e.g. "nd" + "ric": too many consonants
    s += end
    return s


def plausible(s):
    """Phonotactic filter: no triple letters, short consonant/vowel runs."""
    if not 3 <= len(s) <= 10:
        return False
    if "yy" in s or s.startswith("yi") or s.startswith("ye"):
        return False
    run_c = run_v = 0
    for i, ch in enumerate(s):
        if i >= 2 and ch == s[i - 1] == s[i - 2]:
            return False
        if ch in VOWELS:
            run_v, run_c = run_v + 1, 0
        else:
            run_c, run_v = run_c + 1, 0
        if run_v > 2 or run_c > 3 or (run_c == 3 and "h" not in s[i - 2:i + 1]):
            return False
    return True


def accent(rng, s):
    """Replace one accentable letter with an accented variant."""
    # Never the capital letter; n -> ñ only between vowels.
    spots = [i for i, ch in enumerate(s) if i > 0 and ch in ACCENTS and
             (ch != "n" or 0 < i < len(s) - 1 and s[i - 1] in VOWELS and s[i + 1] in VOWELS)]
    if not spots:
        return s
    i = rng.choice(spots)
    return s[:i] + rng.choice(ACCENTS[s[i]]) + s[i + 1:]


def make_names(rng):
    names, seen = [], {}  # dict (not set) keeps everything order-stable
    every = round(1 / ACCENT_SHARE)  # every 33rd name gets an accent (~3%)
    while len(names) < NAMES_COUNT:
        raw = make_name(rng)
        if not plausible(raw):
            continue
        s = raw
        if len(names) % every == every // 2:
            s = accent(rng, raw)
            if s == raw:
                continue
        s = s[0].upper() + s[1:]
        if s.lower() in seen:
            continue
        seen[s.lower()] = True
        names.append(s)
    return "\n".join(names) + "\n"


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def stats(text):
    return len(text), len(dict.fromkeys(text)), len(text.encode("utf-8"))


README = """# data/

Training corpora for charrnn. Everything here is synthetic and was made by
this project: no third-party text is included.

All files in this directory (including this README) are written by

    python3 data/make_corpus.py

The script uses only the Python 3 standard library and a fixed random seed
({seed}), so it is deterministic: re-running it reproduces every file byte for
byte (checked by running it twice and comparing sha256 sums).

| file        | what it is | characters | distinct characters | bytes (UTF-8) |
|-------------|------------|-----------:|--------------------:|--------------:|
| `plays.txt` | invented stage plays from a small hand-written grammar: `ACT II. SCENE 3. A hall in the castle.` headings, `NAME:` lines, 1-4 lines of speech, blank line between speeches. Plain ASCII. | {p_chars} | {p_distinct} | {p_bytes} |
| `names.txt` | {n_lines} invented personal names, one per line, no duplicates, built from syllables with simple phonotactic rules; about 3% contain accented letters (e.g. é, ö, ñ). Meant for line-per-sequence training. | {n_chars} | {n_distinct} | {n_bytes} |

Character counts include newlines. `plays.txt` uses about 20 invented
speakers and a vocabulary of a few hundred ordinary English words with some
archaic forms (thee, thou, hath, dost), so a small character-level LSTM can
pick up both the layout and many real words quickly.
"""


def write(path, text):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    os.makedirs(out_dir, exist_ok=True)
    # Separate generators per file so changing one corpus never shifts the other.
    plays = make_plays(random.Random(SEED))
    names = make_names(random.Random(SEED + 1))
    write(os.path.join(out_dir, "plays.txt"), plays)
    write(os.path.join(out_dir, "names.txt"), names)
    pc, pd, pb = stats(plays)
    nc, nd, nb = stats(names)
    write(os.path.join(out_dir, "README.md"), README.format(
        seed=SEED, p_chars=f"{pc:,}", p_distinct=pd, p_bytes=f"{pb:,}",
        n_lines=f"{names.count(chr(10)):,}", n_chars=f"{nc:,}",
        n_distinct=nd, n_bytes=f"{nb:,}"))
    print(f"plays.txt: {pc} chars, {pd} distinct, {pb} bytes")
    print(f"names.txt: {nc} chars, {nd} distinct, {nb} bytes, {names.count(chr(10))} names")


if __name__ == "__main__":
    main()
