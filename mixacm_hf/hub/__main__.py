"""`python -m mixacm_hf.hub leaderboard|push ...` (see `mixacm_hf.hub.cli`)."""

from .cli import main

main()
