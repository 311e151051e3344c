"""Tests of the similarity engine (cfgclone.similarity), run without servers or databases."""
