"""Word statistics for search indexing: normalised words, frequencies, top words."""

import re
from collections import Counter

WORD = re.compile(r"[a-z0-9']+")
STOPWORDS = frozenset({"a", "an", "and", "the", "of", "to", "in"})


def words(text: str) -> list[str]:
    """Lowercase words; apostrophes stay inside words (it's) but not around them."""
    return [word.strip("'") for word in WORD.findall(text.lower()) if word.strip("'")]


def frequencies(text: str, skip_stopwords: bool = True) -> Counter:
    counts = Counter(words(text))
    if skip_stopwords:
        for stopword in STOPWORDS:
            counts.pop(stopword, None)
    return counts


def top(text: str, n: int = 3) -> list[tuple[str, int]]:
    """The n most frequent words; ties are broken alphabetically so the result is stable."""
    ranked = sorted(frequencies(text).items(), key=lambda item: (-item[1], item[0]))
    return ranked[:n]


def average_word_length(text: str) -> float:
    found = words(text)
    if not found:
        return 0.0
    return sum(len(word) for word in found) / len(found)
