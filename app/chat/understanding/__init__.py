"""Language understanding for the offline demo model: English and German, no model."""

from app.chat.understanding.dates import find_date, parse_date
from app.chat.understanding.language import detect_language
from app.chat.understanding.parser import Intent, Understanding, understand

__all__ = ["Intent", "Understanding", "detect_language", "find_date", "parse_date", "understand"]
