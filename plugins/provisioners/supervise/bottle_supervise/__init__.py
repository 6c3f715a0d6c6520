"""bottle-supervise, the host side: the `supervise` provisioner, the operator's desk and TUI, `bottle proposals|answer|supervise`."""
