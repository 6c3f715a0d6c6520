"""bottle-supervise in the sidecar image: the MCP server the agent asks through, the proposal queue and the deny rules (stdlib only but the server)."""
