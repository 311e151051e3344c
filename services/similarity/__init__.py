"""cfgclone similarity."""
