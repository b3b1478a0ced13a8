"""Webhook targets (validated URLs) and request signing."""
