"""Encrypted backups of the desktop app's database, kept in the blob store."""
