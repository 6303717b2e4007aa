"""The lowest layer: file and process helpers every other folder may use. Imports nothing of ours."""
