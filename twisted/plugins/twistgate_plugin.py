"""twistd plugin: `twistd -n twistgate --config etc/gw.yaml`."""

from twisted.application.service import ServiceMaker

twistgate = ServiceMaker(
    "twistgate",
    "twistgate.tap",
    "An API gateway: routing, streaming forwarding, plugins.",
    "twistgate",
)
