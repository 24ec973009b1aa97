# -*- test-case-name: tests.test_layout -*-
"""
One process serving its listeners: the TCP and UDP protocols, the PROXY
wrapper, the listening service, its metrics and logs. Built on
L{twisted_caps.core} and the fence, L{twisted_caps._twisted}.
"""
