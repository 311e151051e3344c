"""cfgclone fingerprint service: builds, refines and serves the fingerprints of systems."""
