"""The account as a whole: its data export and its deletion (GDPR articles 20 and 17)."""
