"""The protocol edge: A2A over HTTP (and later gRPC) and MCP."""
