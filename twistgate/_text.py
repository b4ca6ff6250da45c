"""Small helpers for the words twistgate prints."""


def plural(count: int, word: str, words: str = "") -> str:
    """``1 listener``, ``2 listeners``; ``words`` for irregular plurals."""
    return f"{count} {word}" if count == 1 else f"{count} {words or word + 's'}"
