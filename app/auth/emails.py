"""One spelling per mailbox: how addresses are normalised, and which are refused.

- Unicode NFKC first, so compatibility forms collapse onto the letters they stand for
  (full-width `ａlice@ｅxample.com` is `alice@example.com`).
- Then the whole address in lower case, local part included. RFC 5321 lets a server
  treat the local part case-sensitively, but no mainstream provider does, and two
  accounts for `Ada@` and `ada@` would be two accounts for one person.
- Refused: a local part or domain label that mixes scripts with characters that pass
  for Latin letters (`аlice`, with a Cyrillic `а`). The tables are Unicode's
  confusables data, through the `confusable-homoglyphs` package. An address written
  wholly in one script passes (`иван@почта.рф`): Unicode counts most Cyrillic letters
  as look-alikes of Latin ones, so refusing those would refuse every Russian address.
"""

from __future__ import annotations

import unicodedata

from confusable_homoglyphs import confusables


class ConfusableAddress(ValueError):
    """The address could pass for another one (look-alike characters of other scripts)."""


def normalise_email(value: str) -> str:
    """NFKC, trimmed, lower case; raises `ConfusableAddress` for look-alike addresses."""
    text = unicodedata.normalize("NFKC", value).strip().lower()
    local, at, domain = text.rpartition("@")
    for part in (local, *domain.split(".")) if at else (text,):
        if part and _confusable(part):
            raise ConfusableAddress(
                "the address mixes look-alike characters of different scripts; "
                "write it in one script"
            )
    return text


def _confusable(part: str) -> bool:
    """Scripts mixed, with characters that pass for Latin letters.

    Japanese mixing kanji and kana passes: none of its characters looks Latin.
    """
    if not confusables.is_mixed_script(part):
        return False
    return bool(confusables.is_confusable(part, greedy=False, preferred_aliases=["latin"]))
