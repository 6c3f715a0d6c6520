"""This machine's address as containers see it, for servers tests and demos run on the host."""

import ipaddress


def host_gateway(client) -> str:
    """The default bridge's gateway: a host address every bridge network's containers reach.

    The default bridge often lists only its subnet; its gateway is then the
    subnet's first host.
    """
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
