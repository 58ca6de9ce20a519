"""The BM25 analyzer: language-agnostic words, and CJK text as overlapping character bigrams.

Text is NFKC-normalized and case-folded. Runs of letters and digits form words (`XK-4471` gives
`xk` and `4471`). Chinese, Japanese and Korean scripts have no spaces between words, so a run of
CJK characters is indexed the way Lucene's CJK analyzer does it: overlapping bigrams
(`大熊猫` -> `大熊`, `熊猫`), plus the single characters (`大`, `熊`, `猫`) so a one-character
query word still matches. No stemming and no stopwords: the analyzer works for every language
the same way.
"""

from __future__ import annotations

import re
import unicodedata

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
