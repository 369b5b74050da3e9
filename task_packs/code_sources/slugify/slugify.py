"""URL slugs for article titles: ASCII, lowercase, hyphenated, length-limited, unique."""

import re
import unicodedata


def slugify(title: str, max_length: int = 40) -> str:
    """The slug cut at a word boundary so that it is at most max_length characters."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = "-".join(words)
    if len(slug) > max_length:
        slug = slug[:max_length].rsplit("-", 1)[0]
    return slug


def unique_slug(title: str, taken: set[str]) -> str:
    """The title's slug, or slug-2, slug-3, ... when that is already taken."""
    base = slugify(title)
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"
