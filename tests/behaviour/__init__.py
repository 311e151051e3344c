"""Tests of the fingerprint model (cfgclone.behaviour), run without servers or databases."""
