"""bottle-egress, the host side: the bottle CA, the egress policy and credentials handed to the sidecar, the `ca` provisioner, `bottle egress`."""
