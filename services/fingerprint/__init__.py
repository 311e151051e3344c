"""cfgclone fingerprint."""
