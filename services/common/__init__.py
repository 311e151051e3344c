"""cfgclone common."""
