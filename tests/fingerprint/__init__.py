"""Tests of the fingerprint service (cfgclone.fingerprint) on a real database."""
