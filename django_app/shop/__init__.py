"""The demo's own app: a tiny shop whose work runs in the background."""
