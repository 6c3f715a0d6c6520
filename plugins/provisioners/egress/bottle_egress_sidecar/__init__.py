"""bottle-egress in the sidecar image: the egress proxy (a mitmproxy addon), its command (``main``) and its
policy (stdlib only: the host validates profiles with it)."""
