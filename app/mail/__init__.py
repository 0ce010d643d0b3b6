"""Outgoing mail: templates, the delivery backends (SMTP, a file outbox) and the queue."""
