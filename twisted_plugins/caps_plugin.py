"""Make C{twistd caps} and C{twist caps} find the capitalization service."""

from twisted.application.service import ServiceMaker

caps = ServiceMaker(
    "twisted-caps",
    "twisted_caps.operating.tap",
    "Capitalization service over TCP and UDP (send hello, get HELLO).",
    "caps",
)
