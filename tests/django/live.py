"""Holder for the BackgroundProcessing a live REST test points the views at."""
bgp = None
