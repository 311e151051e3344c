"""The cfgclone command line: the umbrella CLI, the suite runner and the demo."""
