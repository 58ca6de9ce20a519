"""The BM25 analyzer: words (stemmed where a stemmer exists), and CJK text as character bigrams.

Text is NFKC-normalized and case-folded. Runs of letters and digits form words (`XK-4471` gives
`xk` and `4471`). Chinese, Japanese and Korean scripts have no spaces between words, so a run of
CJK characters is indexed the way Lucene's CJK analyzer does it: overlapping bigrams
(`大熊猫` -> `大熊`, `熊猫`), plus the single characters (`大`, `熊`, `猫`) so a one-character
query word still matches. `analyze` stops there.

`Analyzer(language)` then stems each word with a Snowball stemmer (PyStemmer, as bm25s uses),
so `cells`/`cell` and `mutations`/`mutated` meet. Which stemmer a word gets (`RAG_SPARSE_LANGUAGE`):

- `auto` (the default): by the word's script: Latin -> English, Cyrillic -> Russian, Greek ->
  Greek, Arabic -> Arabic, Armenian -> Armenian, Tamil -> Tamil. Words of other scripts, numbers
  and CJK terms are kept as they are. A Latin-script collection in another language should name
  its language.
- a Snowball language (`german`, `french`, `spanish`, ...; `Stemmer.algorithms()` lists them, and
  two-letter codes such as `de` are accepted): the words of its script use it (Latin for most;
  Arabic script for `persian`, Devanagari for `hindi`); other scripts as `auto`.
- `none`: no stemming (the analyzer of earlier versions).

No stopwords: BM25's IDF already weighs frequent words down, and a stop list is per language.
The in-memory BM25 indexes are built from the chunk texts by each process, so a change of the
setting takes effect at the next start, with nothing stored to rebuild.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

# Han (with extensions A-F and compatibility ideographs), Hiragana, Katakana, Hangul.
_CJK = (
    "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af\U00020000-\U0003134f"
)
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_CJK_RUN = re.compile(rf"[{_CJK}]+")


def analyze(text: str) -> list[str]:
    """Index terms of `text`, in order (repeated terms repeat: BM25 counts them)."""
    terms: list[str] = []
    for match in _TOKEN.finditer(unicodedata.normalize("NFKC", text).casefold()):
        token = match.group()
        if _CJK_RUN.fullmatch(token):
            terms.extend(token)  # unigrams
            terms.extend(token[i : i + 2] for i in range(len(token) - 1))  # bigrams
        else:
            terms.append(token)
    return terms


SCRIPT_LANGUAGE = {"latin": "english", "cyrillic": "russian", "greek": "greek", "arabic": "arabic",
                   "armenian": "armenian", "tamil": "tamil"}
_SCRIPTS = (  # (script, first and last code point of its main blocks)
    ("latin", 0x0041, 0x024F), ("latin", 0x1E00, 0x1EFF), ("greek", 0x0370, 0x03FF), ("greek", 0x1F00, 0x1FFF),
    ("cyrillic", 0x0400, 0x052F), ("armenian", 0x0530, 0x058F), ("arabic", 0x0600, 0x06FF),
    ("arabic", 0x0750, 0x077F), ("arabic", 0xFB50, 0xFDFF), ("arabic", 0xFE70, 0xFEFF), ("tamil", 0x0B80, 0x0BFF),
    ("devanagari", 0x0900, 0x097F), ("hebrew", 0x0590, 0x05FF),
)
# The script a named language's words are written in (Latin when not listed).
NATIVE_SCRIPT = {"russian": "cyrillic", "greek": "greek", "arabic": "arabic", "persian": "arabic",
                 "armenian": "armenian", "tamil": "tamil", "hindi": "devanagari", "nepali": "devanagari",
                 "yiddish": "hebrew"}
CODES = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "pt": "portuguese",
         "nl": "dutch", "sv": "swedish", "no": "norwegian", "da": "danish", "fi": "finnish", "ru": "russian",
         "ar": "arabic", "el": "greek", "tr": "turkish", "hu": "hungarian", "ro": "romanian", "ca": "catalan",
         "cs": "czech", "pl": "polish", "id": "indonesian", "ga": "irish", "lt": "lithuanian", "et": "estonian",
         "eu": "basque", "hy": "armenian", "hi": "hindi", "ne": "nepali", "sr": "serbian", "ta": "tamil", "yi": "yiddish"}
STEM_CACHE = 1 << 18  # distinct words remembered per analyzer
LANGUAGES_HELP = "auto, none, or a Snowball language (english, german, french, ...; or its two-letter code)"


def script_of(word: str) -> str | None:
    """The script of the word's first letter among those with a stemmer, else None."""
    for char in word:
        if char.isalpha():
            point = ord(char)
            for script, low, high in _SCRIPTS:
                if low <= point <= high:
                    return script
            return None
    return None  # digits only


def stemmer_languages() -> tuple[str, ...]:
    import Stemmer

    return tuple(Stemmer.algorithms())


def resolve_language(name: str) -> str:
    """`auto`, `none` or a Snowball algorithm name, from a setting's value; ValueError otherwise."""
    name = name.strip().lower()
    name = CODES.get(name, name)
    if name in ("auto", "none") or name in stemmer_languages():
        return name
    raise ValueError(f"unknown sparse language {name!r}: {LANGUAGES_HELP}")


@cache
def _stemmer(language: str):
    import Stemmer

    return Stemmer.Stemmer(language)


class Analyzer:
    """`analyze` plus per-script stemming (see the module's docstring)."""

    def __init__(self, language: str = "auto"):
        self.language = resolve_language(language)
        self.languages: dict[str, str] = {}
        if self.language != "none":
            self.languages = dict(SCRIPT_LANGUAGE)
            if self.language != "auto":
                self.languages[NATIVE_SCRIPT.get(self.language, "latin")] = self.language

        self._stem = lru_cache(maxsize=STEM_CACHE)(self._stem_term)

    def __call__(self, text: str) -> list[str]:
        terms = analyze(text)
        if not self.languages:
            return terms
        return [self._stem(term) for term in terms]

    def _stem_term(self, term: str) -> str:
        language = None if _CJK_RUN.match(term) else self.languages.get(script_of(term))
        return _stemmer(language).stemWord(term) if language else term
