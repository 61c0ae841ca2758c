"""One agent runtime: plan → tool calls → observations → answer, with changesets."""
