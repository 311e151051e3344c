"""cfgclone collector."""
