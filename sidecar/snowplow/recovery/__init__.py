"""Bad-row recovery: bad rows back into raw records, through enrich again (``recover.py``)."""
