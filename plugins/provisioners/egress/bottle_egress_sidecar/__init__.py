"""bottle-egress in the sidecar image: the egress proxy (a mitmproxy addon) and its policy (stdlib only: the host validates profiles with it)."""
