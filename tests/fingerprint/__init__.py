"""Tests of the fingerprint model (cfgclone.fingerprint), run without servers or databases."""
