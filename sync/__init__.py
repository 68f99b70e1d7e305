"""Fetch, plan (pure diff), apply: CRM sync, offline-event catch-up and write-back."""
