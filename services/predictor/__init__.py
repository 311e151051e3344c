"""cfgclone predictor."""
