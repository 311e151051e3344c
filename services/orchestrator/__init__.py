"""cfgclone orchestrator."""
