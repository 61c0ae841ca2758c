"""MCP: our tool registry, project files and prompts served to MCP clients; external servers' tools for the agent."""
