"""The codebase index: scan, chunk, store, embed, search, symbols, watch."""
